"""Composition, measured (issue #12 item 2): generate from scene A's slots with the slot of one of A's objects
replaced by the slot of an object of scene B, and score the generation against the true composite (A without
that object, with B's object added, drawn by the ``shapes`` generator), beside swapping a random slot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

from ..data.shapes import ShapesOptions, draw_shapes, sample_shapes
from ..eval_mode import seeded_eval
from ..metrics import fg_ari, mean_fg_ari, mse_per_pixel
from .generate import generate_tokens
from .model import SLATE

__all__ = ["CompositionPairs", "composition_pairs", "composition_scores"]

# the contrast the shapes generator keeps between an object and its background (deqslots.data.shapes)
_MIN_CONTRAST = 0.15


@dataclass(frozen=True)
class CompositionPairs:
    """Scene pairs and their true composites, as tensors (images in [0, 1], ids 0 = background).

    Attributes:
        images_a, images_b, composite: ``[P, 3, R, R]``.
        ids_a, ids_b, ids_composite: ``int64 [P, R, R]``.
        removed: ``int64 [P]``, the id in ``ids_a`` of the object taken out of A.
        added: ``int64 [P]``, the id in ``ids_b`` of B's object put into the composite.
    """

    images_a: torch.Tensor
    images_b: torch.Tensor
    composite: torch.Tensor
    ids_a: torch.Tensor
    ids_b: torch.Tensor
    ids_composite: torch.Tensor
    removed: torch.Tensor
    added: torch.Tensor


def composition_pairs(count: int, resolution: int, seed: int = 0,
                      options: Optional[ShapesOptions] = None) -> CompositionPairs:
    """``count`` pairs of ``shapes`` scenes (A, B) and the composite: A with one visible object removed and
    one visible object of B drawn on top (its colour moved away from A's background when too close, as the
    generator does), all drawn by :func:`deqslots.data.shapes.draw_shapes`.

    Args:
        count: pairs.
        resolution: image size.
        seed: fixes the scenes and the objects chosen.
        options: the generator's options (default: ``shapes``'). A needs at least two objects, so that
            the composite keeps one of its own.

    Returns:
        :class:`CompositionPairs`.

    Examples:
        >>> pairs = composition_pairs(2, 32)
        >>> tuple(pairs.composite.shape), bool((pairs.removed >= 1).all())
        ((2, 3, 32, 32), True)
    """
    options = options or ShapesOptions()
    if options.min_objects < 2:
        raise ValueError(f"composition needs scenes A with at least two objects; got min_objects="
                         f"{options.min_objects} (pass ShapesOptions(min_objects=2, ...))")
    rng = np.random.default_rng([seed, 12_002])  # its own stream: not the train / val / test scenes
    out: dict[str, list] = {key: [] for key in ("a", "b", "c", "ia", "ib", "ic", "removed", "added")}
    for _ in range(count):
        background_a, objects_a = sample_shapes(rng, options)
        background_b, objects_b = sample_shapes(rng, options)
        image_a, ids_a, kept_a = draw_shapes(background_a, objects_a, resolution)
        image_b, ids_b, kept_b = draw_shapes(background_b, objects_b, resolution)
        while len(kept_a) < 2 or len(kept_b) < 1:  # too much occlusion: draw again
            background_a, objects_a = sample_shapes(rng, options)
            image_a, ids_a, kept_a = draw_shapes(background_a, objects_a, resolution)
            background_b, objects_b = sample_shapes(rng, options)
            image_b, ids_b, kept_b = draw_shapes(background_b, objects_b, resolution)
        removed = int(rng.integers(len(kept_a)))  # position in kept: id removed + 1
        added = int(rng.integers(len(kept_b)))
        newcomer = objects_b[kept_b[added]]
        colour = newcomer.colour.copy()
        if np.abs(colour - background_a).max() < _MIN_CONTRAST:
            colour = (colour + np.float32(0.5)) % np.float32(1.0)
        objects = [obj for k, obj in enumerate(objects_a) if k != kept_a[removed]] + [newcomer._replace(colour=colour)]
        image_c, ids_c, _ = draw_shapes(background_a, objects, resolution)
        for key, value in (("a", image_a), ("b", image_b), ("c", image_c), ("ia", ids_a), ("ib", ids_b),
                           ("ic", ids_c), ("removed", removed + 1), ("added", added + 1)):
            out[key].append(value)
    tensor = {key: torch.from_numpy(np.stack(value)) if key not in ("removed", "added")
              else torch.tensor(value, dtype=torch.int64) for key, value in out.items()}
    return CompositionPairs(tensor["a"], tensor["b"], tensor["c"], tensor["ia"], tensor["ib"], tensor["ic"],
                            tensor["removed"], tensor["added"])


@torch.no_grad()
def composition_scores(model: SLATE, pairs: CompositionPairs, seed: int = 0) -> dict[str, float]:
    """Swap the slot that holds A's removed object for the slot that holds B's added object, generate, and
    score against the true composite; the same with a random slot of A and a random slot of B.

    The slot that holds an object is the one whose attention covers the object's tokens most (attention
    weighted by each token's share of the object's pixels).

    Args:
        model: a trained SLATE (evaluated in eval mode; its mode is restored).
        pairs: from :func:`composition_pairs`, at the model's resolution.
        seed: seed of the slot noise and of the random swap.

    Returns:
        ``mse_swap`` / ``mse_random``: per-pixel MSE of the generation against the composite;
        ``fg_ari_swap`` / ``fg_ari_random``: FG-ARI of the generation's own attention masks (the model
        re-encodes what it generated) against the composite's objects; ``mse_unswapped``: A's own
        generation against the composite (what ignoring the swap scores).
    """
    c = model.config
    if pairs.images_a.shape[-1] != c.resolution:
        raise ValueError(f"pairs are {pairs.images_a.shape[-1]}x{pairs.images_a.shape[-1]}; the model takes "
                         f"{c.resolution}x{c.resolution}: composition_pairs(count, {c.resolution})")
    device = next(model.parameters()).device
    with seeded_eval(model, seed):
        slots_a, attn_a = _slots(model, pairs.images_a.to(device))
        slots_b, attn_b = _slots(model, pairs.images_b.to(device))
        k_a = _holding_slot(attn_a, pairs.ids_a == pairs.removed[:, None, None], c.grid)
        k_b = _holding_slot(attn_b, pairs.ids_b == pairs.added[:, None, None], c.grid)
        draw = torch.Generator().manual_seed(seed)
        rand_a = torch.randint(c.num_slots, (len(k_a),), generator=draw)
        rand_b = torch.randint(c.num_slots, (len(k_a),), generator=draw)
        rows = torch.arange(len(k_a))
        results: dict[str, float] = {}
        composite = pairs.composite.to(device)
        for name, (ka, kb) in (("swap", (k_a, k_b)), ("random", (rand_a, rand_b))):
            swapped = slots_a.clone()
            swapped[rows, ka] = slots_b[rows, kb]
            images = _generate(model, swapped)
            results[f"mse_{name}"] = float(mse_per_pixel(images, composite))
            masks = model.reconstruct(images)["masks"]
            results[f"fg_ari_{name}"] = mean_fg_ari([fg_ari(pairs.ids_composite, masks.argmax(dim=1).cpu())])
        results["mse_unswapped"] = float(mse_per_pixel(_generate(model, slots_a), composite))
    return results


def _slots(model: SLATE, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features, logits = model.dvae.encode_with_features(images)
    tokens = logits.argmax(dim=1).flatten(1)
    _, slots, attn = model.encode_slots(tokens, features=features)
    return slots, attn


def _holding_slot(attn: torch.Tensor, object_mask: torch.Tensor, grid: int) -> torch.Tensor:
    """[P] index of the slot whose attention [P, K, N] lies most on the object's tokens."""
    share = F.adaptive_avg_pool2d(object_mask[:, None].float(), grid).flatten(1).to(attn.device)  # [P, N]
    return (attn * share[:, None]).sum(dim=2).argmax(dim=1).cpu()


def _generate(model: SLATE, slots: torch.Tensor) -> torch.Tensor:
    c = model.config
    tokens, _ = generate_tokens(model.embedding, model.decoder, model.head, model.slot_proj(slots), c.num_tokens)
    return model.dvae.decode_tokens(tokens, c.grid).clamp(0, 1)
