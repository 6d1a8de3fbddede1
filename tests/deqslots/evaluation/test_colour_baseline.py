"""The colour-only control: k-means on pixel RGB, scored with the same FG-ARI as the models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from deqslots.data import generate_batch
from deqslots.evaluation.metrics import colour_baseline_fg_ari, colour_kmeans_ids, fg_ari


def test_flat_distinct_colours_are_solved_by_colour_alone():
    images, ids = generate_batch("shapes", 8, split="val", resolution=32)
    scores = colour_baseline_fg_ari(images, ids)
    assert scores.shape == (8,) and scores.dtype == torch.float64
    assert float(torch.nanmean(scores)) > 0.97


# same-hue: every object shares one hue and spans the same brightness range (measured 0.005 on 256 val
# images); clevr-mirror: shading splits objects and repeated CLEVR colours merge them (measured 0.38).
@pytest.mark.parametrize("name, ceiling", [("same-hue", 0.05), ("clevr-mirror", 0.45)])
def test_colour_does_not_separate_the_hard_sets(name, ceiling):
    images, ids = generate_batch(name, 16, split="val", resolution=32)
    assert float(torch.nanmean(colour_baseline_fg_ari(images, ids))) < ceiling


def test_clusters_are_sklearn_kmeans_with_k_true_objects_plus_one():
    images, ids = generate_batch("stacks", 3, split="test", resolution=16)
    pred = colour_kmeans_ids(images, torch.tensor([2, 3, 4]), seed=5)
    for b, k in enumerate((2, 3, 4)):
        pixels = images[b].permute(1, 2, 0).reshape(-1, 3).double().numpy()
        expected = KMeans(n_clusters=k, n_init=4, random_state=5).fit_predict(pixels)
        assert np.array_equal(pred[b].reshape(-1).numpy(), expected)
    # k = objects + 1 per image is what colour_baseline_fg_ari scores
    objects = torch.tensor([len(torch.unique(m[m > 0])) for m in ids])
    torch.testing.assert_close(colour_baseline_fg_ari(images, ids, seed=5),
                               fg_ari(ids, colour_kmeans_ids(images, objects + 1, seed=5)))


def test_fewer_colours_than_clusters_and_blank_images():
    images = torch.zeros(2, 3, 4, 4)
    images[0, 0, :, :2] = 1.0  # two colours, asked for five clusters
    pred = colour_kmeans_ids(images, 5)
    assert len(torch.unique(pred[0])) == 2 and torch.equal(pred[1], torch.zeros(4, 4, dtype=torch.long))


def test_bad_input():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        colour_kmeans_ids(torch.zeros(2, 4, 4), 2)
    with pytest.raises(ValueError, match="positive"):
        colour_kmeans_ids(torch.zeros(2, 3, 4, 4), 0)
    with pytest.raises(ValueError, match="true_ids"):
        colour_baseline_fg_ari(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long))


def test_cluster_counts_of_the_wrong_length_or_type():
    # a list of the wrong length failed inside .expand (RuntimeError); True passed as an int (one cluster)
    images = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"num_clusters must be one int or B = 2 ints \(one per image\); got 3 counts"):
        colour_kmeans_ids(images, [2, 3, 4])
    with pytest.raises(TypeError, match=r"num_clusters must be an int or \[B\] ints; got True \(torch.bool\)"):
        colour_kmeans_ids(images, True)
    with pytest.raises(TypeError, match=r"got \[2.5, 3.0\] \(torch.float32\)"):
        colour_kmeans_ids(images, [2.5, 3.0])
    assert colour_kmeans_ids(images, [2]).shape == colour_kmeans_ids(images, [2, 3]).shape == (2, 4, 4)
