"""Foreground ARI against scikit-learn, its edge cases, and the two MSE conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from deqslots.evaluation.metrics import fg_ari, masks_to_ids, mse_per_image_sum, mse_per_pixel


def _sklearn_fg_ari(true, pred):
    out = []
    for t, p in zip(true.reshape(len(true), -1).numpy(), pred.reshape(len(pred), -1).numpy()):
        fg = t != 0
        out.append(adjusted_rand_score(t[fg], p[fg]) if fg.any() else math.nan)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(6))
def test_matches_sklearn_on_random_label_maps(seed):
    gen = torch.Generator().manual_seed(seed)
    num_true, num_pred = 2 + seed, 3 + 2 * seed
    true = torch.randint(0, num_true, (5, 16, 16), generator=gen)
    # Make the prediction partly agree with the truth, so scores spread over (0, 1).
    pred = torch.randint(0, num_pred, (5, 16, 16), generator=gen)
    agree = torch.rand(5, 16, 16, generator=gen) < torch.linspace(0.0, 1.0, 5)[:, None, None]
    pred = torch.where(agree, true, pred)
    ours = fg_ari(true, pred)
    assert ours.dtype == torch.float64 and ours.shape == (5,)
    torch.testing.assert_close(ours, _sklearn_fg_ari(true, pred), atol=1e-6, rtol=0)
    assert float(ours[-1]) == 1.0  # the last image agrees everywhere


def test_matches_sklearn_on_procedural_masks_with_blurry_predictions():
    from deqslots.data import generate_batch

    _, true = generate_batch("clevr-mirror", range(6), resolution=32)
    # Shift the truth by a pixel and merge two ids: a plausible imperfect segmentation.
    pred = torch.roll(true, shifts=1, dims=2).clamp(max=3)
    torch.testing.assert_close(fg_ari(true, pred), _sklearn_fg_ari(true, pred), atol=1e-6, rtol=0)


def test_perfect_prediction_and_permutation_invariance():
    gen = torch.Generator().manual_seed(0)
    true = torch.randint(0, 6, (4, 32, 32), generator=gen)
    assert torch.equal(fg_ari(true, true), torch.ones(4, dtype=torch.float64))
    permutation = torch.tensor([4, 0, 5, 1, 3, 2])
    assert torch.equal(fg_ari(true, permutation[true]), torch.ones(4, dtype=torch.float64))
    noisy = torch.where(torch.rand(4, 32, 32, generator=gen) < 0.3, 0, true)
    torch.testing.assert_close(fg_ari(true, permutation[noisy] + 10), fg_ari(true, noisy), atol=1e-12, rtol=0)


def test_background_pixels_are_ignored():
    true = torch.tensor([[[0, 0, 1, 1, 2, 2]]])
    # Whatever the prediction says on the background, the foreground is split perfectly.
    assert fg_ari(true, torch.tensor([[[1, 2, 3, 3, 0, 0]]])).item() == 1.0
    # One predicted cluster for two true objects: ARI 0 (sklearn gives 0 too).
    assert fg_ari(true, torch.tensor([[[5, 6, 0, 0, 0, 0]]])).item() == 0.0


def test_single_object_and_single_cluster_conventions():
    true = torch.zeros(3, 8, 8, dtype=torch.long)
    true[:, 2:6, 2:6] = 1
    pred = torch.zeros(3, 8, 8, dtype=torch.long)
    pred[1, 2:4] = 1  # splits the one object into two clusters
    pred[2, 4, 4] = 3
    scores = fg_ari(true, pred)
    expected = _sklearn_fg_ari(true, pred)
    assert scores[0].item() == 1.0  # both partitions are one cluster
    torch.testing.assert_close(scores, expected, atol=1e-12, rtol=0)
    assert expected[1].item() == 0.0 and expected[2].item() == 0.0
    one_pixel = torch.zeros(1, 4, 4, dtype=torch.long)
    one_pixel[0, 1, 1] = 2
    assert fg_ari(one_pixel, torch.randint(0, 4, (1, 4, 4))).item() == 1.0


def test_all_background_image_gives_nan_and_nanmean_skips_it():
    true = torch.zeros(3, 8, 8, dtype=torch.long)
    true[1, :4] = 1
    true[1, 4:] = 2
    true[2, 0, :] = 1
    pred = true.clone()
    scores = fg_ari(true, pred)
    assert math.isnan(scores[0].item())
    assert scores[1:].tolist() == [1.0, 1.0]
    assert torch.nanmean(scores).item() == 1.0
    background = torch.zeros(2, 5, 5, dtype=torch.long)
    assert fg_ari(background, background).isnan().all()


def test_random_prediction_scores_near_zero():
    gen = torch.Generator().manual_seed(1)
    true = torch.randint(0, 5, (8, 64, 64), generator=gen)
    pred = torch.randint(0, 7, (8, 64, 64), generator=gen)
    scores = fg_ari(true, pred)
    assert scores.abs().max().item() < 0.01


def test_soft_masks_and_masks_to_ids():
    gen = torch.Generator().manual_seed(2)
    true = torch.randint(0, 4, (3, 12, 12), generator=gen)
    logits = torch.randn(3, 5, 12, 12, generator=gen)
    soft = logits.softmax(dim=1)
    ids = masks_to_ids(soft)
    assert ids.dtype == torch.int64 and ids.shape == (3, 12, 12)
    assert torch.equal(ids, logits.argmax(dim=1))
    assert torch.equal(fg_ari(true, soft), fg_ari(true, ids))
    assert torch.equal(masks_to_ids(soft[:, :, None]), ids)  # [B, K, 1, H, W]
    assert torch.equal(masks_to_ids(soft[..., None]), ids)  # [B, K, H, W, 1]
    with pytest.raises(ValueError):
        masks_to_ids(soft[0])


def test_large_label_values_are_compacted():
    gen = torch.Generator().manual_seed(3)
    true = torch.randint(0, 4, (2, 16, 16), generator=gen)
    pred = torch.randint(0, 3, (2, 16, 16), generator=gen) * 10_000_000 + 7
    expected = _sklearn_fg_ari(true, pred)
    torch.testing.assert_close(fg_ari(true * 3_000_000, pred), expected, atol=1e-6, rtol=0)


def test_invalid_inputs():
    ids = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="same batched shape"):
        fg_ari(ids, ids[:, :3])
    with pytest.raises(ValueError, match="integer"):
        fg_ari(ids.float(), ids)
    with pytest.raises(ValueError, match="non-negative"):
        fg_ari(ids, ids - 1)


def test_mse_conventions():
    x = torch.zeros(2, 3, 4, 5)
    y = torch.zeros(2, 3, 4, 5)
    y[0] = 1.0  # first image wrong by 1 everywhere, second image perfect
    assert mse_per_pixel(x, y).item() == pytest.approx(0.5)
    assert mse_per_image_sum(x, y).item() == pytest.approx(3 * 4 * 5 / 2)  # 60 over a batch of 2
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 3, 8, 8, generator=gen), torch.rand(4, 3, 8, 8, generator=gen)
    reference = np.mean(np.sum((a.numpy() - b.numpy()) ** 2, axis=(1, 2, 3)))
    assert mse_per_image_sum(a, b).item() == pytest.approx(reference, rel=1e-6)
    assert mse_per_image_sum(a, b).item() == pytest.approx(mse_per_pixel(a, b).item() * 3 * 8 * 8, rel=1e-6)
    assert mse_per_pixel(a, b).dim() == 0 and mse_per_image_sum(a, b).dim() == 0
    with pytest.raises(ValueError):
        mse_per_pixel(a, b[:2])
