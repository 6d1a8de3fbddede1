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
from ..evaluation.eval_mode import seeded_eval
from ..evaluation.metrics import fg_ari, mean_fg_ari, mse_per_pixel
from .generate import generate_tokens
from .model import SLATE

__all__ = ["CompositionPairs", "Compositions", "composition_pairs", "compose", "composition_scores"]

# the contrast the shapes generator keeps between an object and its background (deqslots.data.shapes)
_MIN_CONTRAST = 0.15


@dataclass(frozen=True)
class CompositionPairs:
    """Scene pairs and their true composites, as tensors (images in [0, 1], ids 0 = background).

    Attributes:
        images_a: scenes A, ``float32 [P, 3, R, R]``.
        images_b: scenes B, ``float32 [P, 3, R, R]``.
        composite: the true composites (A without its removed object, with B's added one drawn on top),
            ``float32 [P, 3, R, R]``.
        ids_a: A's object ids, ``int64 [P, R, R]``.
        ids_b: B's object ids, ``int64 [P, R, R]``.
        ids_composite: the composite's object ids, ``int64 [P, R, R]`` (B's object, drawn last, has the highest id).
        removed: ``int64 [P]``, the id in ``ids_a`` of the object taken out of A.
        added: ``int64 [P]``, the id in ``ids_b`` of B's object put into the composite.

    Examples:
        >>> pairs = composition_pairs(3, 16, seed=1)
        >>> tuple(pairs.images_a.shape), tuple(pairs.ids_composite.shape), pairs.removed.dtype
        ((3, 3, 16, 16), (3, 16, 16), torch.int64)
        >>> bool((pairs.ids_a == pairs.removed[:, None, None]).flatten(1).any(dim=1).all())  # visible in A
        True
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

    Raises:
        ValueError: ``options.min_objects`` is below 2.

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


@dataclass(frozen=True)
class Compositions:
    """What :func:`compose` generated for each pair (images in [0, 1]).

    Attributes:
        swap: ``[P, 3, R, R]`` generated from A's slots with the slot holding A's removed object replaced by
            the slot holding B's added object.
        random: the same with a random slot of A replaced by a random slot of B.
        unswapped: A's own slots, generated (what ignoring the swap gives).
        masks_a: ``[P, K, R, R]`` A's attention masks (token grid upsampled as the model's ``mask_upsample``).
        slot_a: ``int64 [P]`` the slot of A swapped out: the one holding A's removed object.
        slot_b: ``int64 [P]`` the slot of B swapped in: the one holding B's added object.

    Examples:
        >>> import torch
        >>> from deqslots.slate import SLATEConfig
        >>> _ = torch.manual_seed(0)
        >>> model = SLATE(SLATEConfig(resolution=8, vocab_size=8, dvae_channels=8, d_model=16, num_blocks=1,
        ...                           num_heads=2, num_slots=3, slot_dim=16, mlp_hidden=16))
        >>> made = compose(model, composition_pairs(2, 8))
        >>> tuple(made.swap.shape), tuple(made.masks_a.shape), tuple(made.slot_a.shape)
        ((2, 3, 8, 8), (2, 3, 8, 8), (2,))
    """

    swap: torch.Tensor
    random: torch.Tensor
    unswapped: torch.Tensor
    masks_a: torch.Tensor
    slot_a: torch.Tensor
    slot_b: torch.Tensor


@torch.no_grad()
def compose(model: SLATE, pairs: CompositionPairs, seed: int = 0) -> Compositions:
    """Swap the slot that holds A's removed object for the slot that holds B's added object and generate; the
    same with a random slot of A and a random slot of B, and A's own slots unchanged.

    The slot that holds an object is the one whose attention covers the object's tokens most (attention
    weighted by each token's share of the object's pixels).

    Args:
        model: a trained SLATE (evaluated in eval mode; its mode is restored).
        pairs: from :func:`composition_pairs`, at the model's resolution.
        seed: seed of the slot noise and of the random swap.

    Returns:
        :class:`Compositions` (on the CPU).

    Raises:
        ValueError: the pairs' resolution is not the model's, or the model is at stage ``"dvae"`` (no slots).

    Examples:
        >>> import torch
        >>> from deqslots.slate import SLATEConfig
        >>> _ = torch.manual_seed(0)
        >>> model = SLATE(SLATEConfig(resolution=8, vocab_size=8, dvae_channels=8, d_model=16, num_blocks=1,
        ...                           num_heads=2, num_slots=3, slot_dim=16, mlp_hidden=16))
        >>> pairs = composition_pairs(2, 8)
        >>> made = compose(model, pairs, seed=0)
        >>> tuple(made.random.shape), bool(((made.slot_a >= 0) & (made.slot_a < 3)).all())
        ((2, 3, 8, 8), True)
        >>> compose(model, composition_pairs(1, 16))
        Traceback (most recent call last):
        ...
        ValueError: pairs are 16x16; the model takes 8x8: composition_pairs(count, 8)
    """
    c = model.config
    if pairs.images_a.shape[-1] != c.resolution:
        raise ValueError(f"pairs are {pairs.images_a.shape[-1]}x{pairs.images_a.shape[-1]}; the model takes "
                         f"{c.resolution}x{c.resolution}: composition_pairs(count, {c.resolution})")
    if model.stage == "dvae":
        raise ValueError("composition needs slots: this SLATE is at stage 'dvae' (only the dVAE is trained); "
                         "train --stage slots (or joint) first")
    device = next(model.parameters()).device
    with seeded_eval(model, seed):
        _, slots_a, attn_a = model.encode_images(pairs.images_a.to(device))
        _, slots_b, attn_b = model.encode_images(pairs.images_b.to(device))
        k_a = _holding_slot(attn_a, pairs.ids_a == pairs.removed[:, None, None], c.grid)
        k_b = _holding_slot(attn_b, pairs.ids_b == pairs.added[:, None, None], c.grid)
        draw = torch.Generator().manual_seed(seed)
        rand_a = torch.randint(c.num_slots, (len(k_a),), generator=draw)
        rand_b = torch.randint(c.num_slots, (len(k_a),), generator=draw)
        rows = torch.arange(len(k_a))
        generated = {}
        for name, (ka, kb) in (("swap", (k_a, k_b)), ("random", (rand_a, rand_b))):
            swapped = slots_a.clone()
            swapped[rows, ka] = slots_b[rows, kb]
            generated[name] = _generate(model, swapped).cpu()
        generated["unswapped"] = _generate(model, slots_a).cpu()
        masks = model.attention_masks(attn_a).cpu()
    return Compositions(generated["swap"], generated["random"], generated["unswapped"], masks, k_a, k_b)


@torch.no_grad()
def composition_scores(model: SLATE, pairs: CompositionPairs, seed: int = 0,
                       compositions: Optional[Compositions] = None) -> dict[str, float]:
    """Score :func:`compose`'s generations against the true composite.

    Args:
        model: a trained SLATE (evaluated in eval mode; its mode is restored).
        pairs: from :func:`composition_pairs`, at the model's resolution.
        seed: seed of the slot noise and of the random swap.
        compositions: :func:`compose`'s result for these pairs and seed, if already made (else made here).

    Returns:
        ``mse_swap`` / ``mse_random``: per-pixel MSE of the generation against the composite;
        ``fg_ari_swap`` / ``fg_ari_random``: FG-ARI of the generation's own attention masks (the model
        re-encodes what it generated) against the composite's objects; ``mse_unswapped``: A's own
        generation against the composite (what ignoring the swap scores).

    Raises:
        ValueError: as :func:`compose`, when it has to make the compositions: the pairs' resolution is not the
            model's, or the model is at stage ``"dvae"``.

    Examples:
        >>> import torch
        >>> from deqslots import SLATE, slate_config_for
        >>> _ = torch.manual_seed(0)
        >>> model = SLATE(slate_config_for("cpu-slate", resolution=16, num_slots=3, vocab_size=8))
        >>> sorted(composition_scores(model, composition_pairs(2, 16)))
        ['fg_ari_random', 'fg_ari_swap', 'mse_random', 'mse_swap', 'mse_unswapped']
    """
    made = compositions if compositions is not None else compose(model, pairs, seed)
    device = next(model.parameters()).device
    results: dict[str, float] = {}
    with seeded_eval(model, seed):
        for name, images in (("swap", made.swap), ("random", made.random)):
            results[f"mse_{name}"] = float(mse_per_pixel(images, pairs.composite))
            masks = model.reconstruct(images.to(device))["masks"]
            results[f"fg_ari_{name}"] = mean_fg_ari([fg_ari(pairs.ids_composite, masks.argmax(dim=1).cpu())])
    results["mse_unswapped"] = float(mse_per_pixel(made.unswapped, pairs.composite))
    return results


def _holding_slot(attn: torch.Tensor, object_mask: torch.Tensor, grid: int) -> torch.Tensor:
    """[P] index of the slot whose attention [P, K, N] lies most on the object's tokens."""
    share = F.adaptive_avg_pool2d(object_mask[:, None].float(), grid).flatten(1).to(attn.device)  # [P, N]
    return (attn * share[:, None]).sum(dim=2).argmax(dim=1).cpu()


def _generate(model: SLATE, slots: torch.Tensor) -> torch.Tensor:
    c = model.config
    tokens, _ = generate_tokens(model.embedding, model.decoder, model.head, model.slot_proj(slots), c.num_tokens)
    return model.decode_tokens(tokens)
