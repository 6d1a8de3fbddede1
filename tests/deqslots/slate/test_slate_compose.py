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


def test_compose_swaps_exactly_the_holding_slots_and_eval_refuses_what_cannot_compose(tmp_path, capsys):
    from deqslots.cli import main
    from deqslots.slate.compose import compose

    torch.manual_seed(0)
    model = SLATE(slate_config_for("cpu-slate", resolution=16, num_slots=3, vocab_size=8))
    pairs = composition_pairs(3, 16, seed=1)
    made = compose(model, pairs, seed=1)
    assert made.swap.shape == made.random.shape == made.unswapped.shape == (3, 3, 16, 16)
    assert made.masks_a.shape == (3, 3, 16, 16) and torch.allclose(made.masks_a.sum(1), torch.ones(3, 16, 16))
    assert compose(model, pairs, seed=1).swap.equal(made.swap)  # deterministic for a seed
    assert composition_scores(model, pairs, seed=1, compositions=made) == composition_scores(model, pairs, seed=1)
    with pytest.raises(ValueError, match="stage 'dvae'"):
        compose(model.set_stage("dvae"), pairs)
    # a slot-attention run does not generate from slots: --composition is refused with what to do
    run = tmp_path / "sa"
    assert main(["train", "--data", "shapes", "--resolution", "16", "--num-slots", "3", "--batch-size", "2",
                 "--steps", "1", "--eval-every", "1", "--eval-batches", "1", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--batches", "1", "--composition", "2"]) == 2
    assert "drop --composition" in capsys.readouterr().err
    assert main(["eval", str(run), "--batches", "1", "--composition", "-1"]) == 2
    assert "--composition takes a number of scene pairs >= 0" in capsys.readouterr().err
