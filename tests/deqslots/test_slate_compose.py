"""Composition, measured: the shapes scene as data draws the same image, the true composite is A without one
object plus B's, and the slot swap picks the slots that hold those objects."""

import numpy as np
import pytest
import torch

from deqslots import SLATE, slate_config_for
from deqslots.data.shapes import ShapesOptions, draw_shapes, render_shapes, sample_shapes
from deqslots.slate.compose import _holding_slot, composition_pairs, composition_scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scene_as_data_draws_the_generators_image(seed):
    options = ShapesOptions()
    image, ids = render_shapes(np.random.default_rng(seed), 32, options)
    background, objects = sample_shapes(np.random.default_rng(seed), options)
    again, same_ids, kept = draw_shapes(background, objects, 32)
    assert np.array_equal(image, again) and np.array_equal(ids, same_ids)
    assert len(kept) == ids.max() and all(np.array_equal(objects[k].colour, image[:, ids == i + 1][:, 0])
                                          for i, k in enumerate(kept))


def test_composite_is_a_without_one_object_plus_one_of_b():
    pairs = composition_pairs(8, 32, seed=3)
    for p in range(8):
        a, c = pairs.images_a[p], pairs.composite[p]
        ids_a, ids_c = pairs.ids_a[p], pairs.ids_composite[p]
        newcomer = ids_c == ids_c.max()  # drawn last, so it has the highest id
        removed = ids_a == pairs.removed[p]
        assert removed.any() and newcomer.any()
        untouched = ~removed & ~newcomer
        assert torch.equal(c[:, untouched], a[:, untouched])  # the rest of A is as it was
        background = a[:, ids_a == 0][:, 0] if (ids_a == 0).any() else None
        if background is not None:  # where the removed object was and nothing else is: A's background
            uncovered = removed & (ids_c == 0)
            assert torch.equal(c[:, uncovered], background[:, None].expand(3, int(uncovered.sum())))
        colour_b = pairs.images_b[p][:, pairs.ids_b[p] == pairs.added[p]][:, 0]
        colour_c = c[:, newcomer][:, 0]
        shifted = (colour_b + 0.5) % 1.0
        assert torch.allclose(colour_c, colour_b) or torch.allclose(colour_c, shifted, atol=1e-6)
    with pytest.raises(ValueError, match="at least two objects"):
        composition_pairs(1, 32, options=ShapesOptions(min_objects=1))


def test_holding_slot_is_the_slot_attending_to_the_object():
    attn = torch.full((1, 3, 4), 0.1)  # 3 slots over a 2x2 token grid
    attn[0, 2, 3] = 0.8  # slot 2 owns the bottom-right token
    attn[0, 0, :3] = 0.8
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 5:, 5:] = True  # an object in the bottom-right token
    assert _holding_slot(attn, mask, 2).tolist() == [2]
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :2, :2] = True
    assert _holding_slot(attn, mask, 2).tolist() == [0]


def test_composition_scores_run_end_to_end():
    torch.manual_seed(0)
    model = SLATE(slate_config_for("cpu-slate", resolution=16, num_slots=3, vocab_size=8))
    pairs = composition_pairs(4, 16)
    scores = composition_scores(model, pairs)
    assert set(scores) == {"mse_swap", "mse_random", "fg_ari_swap", "fg_ari_random", "mse_unswapped"}
    assert all(0 <= scores[k] <= 1 for k in ("mse_swap", "mse_random", "mse_unswapped"))
    assert model.training  # the mode is restored
    with pytest.raises(ValueError, match=r"composition_pairs\(count, 16\)"):
        composition_scores(model, composition_pairs(1, 32))
