"""Evaluation metrics: foreground ARI for object masks, and the two MSE conventions in the literature.

Conventions:

* :func:`fg_ari` follows Slot Attention (Locatello et al., 2020): pixels whose ground-truth id is 0
  (background) are dropped and the adjusted Rand index is computed per image over the rest. The
  reported number is the mean over images.
* :func:`mse_per_pixel` is the mean squared error over every element (the Slot Attention training
  loss).
* :func:`mse_per_image_sum` is the squared error summed over each image's pixels and channels, then
  averaged over the batch. SLATE reports this; Table 3 of Chang et al. (2022) appears to use it too
  (its values, for example 10.66 vs 67.04 on CLEVR-Mirror, are far too large for a per-pixel mean).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["mean_fg_ari", "fg_ari", "masks_to_ids", "mse_per_pixel", "mse_per_image_sum", "colour_kmeans_ids",
           "colour_baseline_fg_ari"]

# Above this many contingency cells the labels are first compacted with torch.unique.
_MAX_DENSE_CELLS = 1 << 20


def masks_to_ids(masks: torch.Tensor) -> torch.Tensor:
    """Turn soft or one-hot slot masks into hard instance ids by an argmax over slots.

    Args:
        masks: ``[B, K, H, W]`` per-slot masks (for example decoder alphas after the softmax over
            slots). ``[B, K, 1, H, W]`` and ``[B, K, H, W, 1]`` are accepted too.

    Returns:
        ``int64 [B, H, W]`` with values in ``0..K-1``: the index of the winning slot.

    Raises:
        ValueError: ``masks`` is not 4-D after dropping a singleton channel.

    Examples:
        >>> masks = torch.tensor([[[[0.9, 0.2]], [[0.1, 0.8]]]])  # B=1, K=2, H=1, W=2
        >>> masks_to_ids(masks).tolist()
        [[[0, 1]]]
    """
    if masks.dim() == 5:
        if masks.shape[2] == 1:
            masks = masks.squeeze(2)
        elif masks.shape[-1] == 1:
            masks = masks.squeeze(-1)
    if masks.dim() != 4:
        shape = tuple(masks.shape)
        raise ValueError(f"masks must be [B, K, H, W] (or with a singleton channel); got {shape}")
    return masks.argmax(dim=1)


def _flat_labels(ids: torch.Tensor, name: str) -> torch.Tensor:
    if ids.dtype.is_floating_point or ids.dtype.is_complex:
        raise ValueError(f"{name} must hold integer ids; got dtype {ids.dtype}")
    ids = ids.reshape(ids.shape[0], -1).to(torch.int64)
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError(f"{name} must be non-negative ids")
    return ids


def fg_ari(true_ids: torch.Tensor, pred_ids: torch.Tensor) -> torch.Tensor:
    """Foreground adjusted Rand index per image, as in Slot Attention's evaluation.

    The ARI compares the partition of each image's foreground pixels (ground-truth id != 0) induced by
    ``true_ids`` with the one induced by ``pred_ids``; predicted labels are arbitrary (any permutation
    scores the same) and the prediction may assign foreground pixels to a "background" slot. Computed
    for the whole batch at once from a ``[B, T, P]`` contingency table built with ``bincount``.

    Edge cases:

    * No foreground pixels in an image: the ARI is undefined and the result is ``NaN`` for that image.
      Average with ``torch.nanmean(scores)`` (or drop such images) to follow the usual protocol.
    * Both partitions put all foreground pixels in one cluster, or more generally agree on every pair
      of pixels (including a single foreground pixel): ``1.0``, as ``sklearn.metrics.adjusted_rand_score``
      returns.

    Otherwise the value equals ``sklearn.metrics.adjusted_rand_score(true[fg], pred[fg])``.

    Args:
        true_ids: Ground-truth ids ``[B, H, W]`` (any trailing shape), integer, 0 = background.
        pred_ids: Predicted ids of the same shape, integer; or soft slot masks ``[B, K, H, W]`` in a
            floating dtype, converted with :func:`masks_to_ids`.

    Returns:
        ``float64 [B]`` scores in ``[-1, 1]`` (``NaN`` where an image has no foreground).

    Raises:
        ValueError: the two are not the same batched shape (at least 2-D), ids are floating point or complex
            (other than soft masks for ``pred_ids``), or an id is negative.

    Examples:
        >>> true = torch.tensor([[[0, 1, 1, 2, 2]]])
        >>> fg_ari(true, torch.tensor([[[5, 3, 3, 4, 4]]])).tolist()
        [1.0]
        >>> fg_ari(true, torch.tensor([[[0, 0, 0, 0, 0]]])).tolist()
        [0.0]
    """
    if pred_ids.dtype.is_floating_point and pred_ids.dim() == true_ids.dim() + 1:
        pred_ids = masks_to_ids(pred_ids)
    if true_ids.dim() < 2 or true_ids.shape != pred_ids.shape:
        raise ValueError(
            f"true_ids and pred_ids must have the same batched shape [B, H, W]; "
            f"got {tuple(true_ids.shape)} and {tuple(pred_ids.shape)}"
        )
    true = _flat_labels(true_ids, "true_ids")
    pred = _flat_labels(pred_ids, "pred_ids")
    batch = true.shape[0]
    if true.numel() == 0:
        return torch.full((batch,), float("nan"), dtype=torch.float64, device=true.device)

    num_true = int(true.max()) + 1
    num_pred = int(pred.max()) + 1
    if batch * num_true * num_pred > _MAX_DENSE_CELLS:
        # Sparse, large label values: relabel to 0..n-1 so the table stays small.
        _, true = torch.unique(true, return_inverse=True)
        _, pred = torch.unique(pred, return_inverse=True)
        num_true = int(true.max()) + 1
        num_pred = int(pred.max()) + 1

    foreground = true != 0
    row = torch.arange(batch, device=true.device)[:, None].expand_as(true)
    cell = (row * num_true + true) * num_pred + pred
    counts = torch.bincount(cell[foreground], minlength=batch * num_true * num_pred)
    counts = counts.reshape(batch, num_true, num_pred).to(torch.float64)

    # Pair-counting form of the ARI (Hubert & Arabie), as sklearn's pair_confusion_matrix: pairs are
    # ordered, which cancels in the ratio.
    n = counts.sum(dim=(1, 2))
    sum_cells = (counts * counts).sum(dim=(1, 2))
    sum_true = (counts.sum(dim=2) ** 2).sum(dim=1)
    sum_pred = (counts.sum(dim=1) ** 2).sum(dim=1)
    both = sum_cells - n
    only_pred = sum_pred - sum_cells
    only_true = sum_true - sum_cells
    neither = n * n - only_pred - only_true - sum_cells
    numerator = 2.0 * (both * neither - only_true * only_pred)
    denominator = (both + only_true) * (only_true + neither) + (both + only_pred) * (only_pred + neither)
    agree = (only_true == 0) & (only_pred == 0)
    one = torch.ones_like(n)
    ari = torch.where(agree, one, numerator / torch.where(agree, one, denominator))
    return torch.where(n > 0, ari, torch.full_like(n, float("nan")))


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape; got {tuple(x.shape)} and {tuple(y.shape)}")


def mse_per_pixel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (batch, channels and pixels): the per-pixel convention.

    Args:
        x: Reconstruction, any shape.
        y: Target, same shape.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: ``x`` and ``y`` differ in shape.

    Examples:
        >>> mse_per_pixel(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)).item()
        1.0
    """
    _check_pair(x, y)
    return (x - y).pow(2).mean()


def mse_per_image_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared error summed over each image, averaged over the batch: SLATE's and Chang et al.'s MSE.

    Equals ``mse_per_pixel(x, y) * C * H * W``. The value depends on the pixel range and resolution,
    so compare with published numbers only on the same ones (SLATE feeds images in ``[0, 1]``).

    Args:
        x: Reconstruction ``[B, ...]`` (typically ``[B, C, H, W]``).
        y: Target, same shape.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: ``x`` and ``y`` differ in shape, or have no batch dimension (0-D).

    Examples:
        >>> mse_per_image_sum(torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)).item()
        48.0
    """
    _check_pair(x, y)
    if x.dim() < 1:
        raise ValueError("x and y need a leading batch dimension")
    return (x - y).pow(2).reshape(x.shape[0], -1).sum(dim=1).mean()


def mean_fg_ari(per_image: list[torch.Tensor]) -> float:
    """Mean FG-ARI over the images that have foreground (NaN entries dropped); NaN when none has.

    Args:
        per_image: per-batch score tensors, e.g. :func:`fg_ari`'s ``[B]`` results (NaN = no foreground).

    Returns:
        The mean of the non-NaN scores over all batches, or NaN when there are none (or the list is empty).

    Examples:
        >>> mean_fg_ari([torch.tensor([1.0, float("nan")]), torch.tensor([0.5])])
        0.75
        >>> mean_fg_ari([])
        nan
    """
    ari = torch.cat(per_image) if per_image else torch.empty(0)
    ari = ari[~torch.isnan(ari)]
    return float(ari.mean()) if ari.numel() else math.nan


def colour_kmeans_ids(images: torch.Tensor, num_clusters: "int | torch.Tensor", seed: int = 0) -> torch.Tensor:
    """Segment each image by k-means on its pixels' RGB values alone: the colour-only control.

    A model's segmentation means "objects" only by its margin over this one: on scenes of flat, distinct
    colours it already scores an FG-ARI near 1, on shaded scenes whose objects share a hue it is low.
    Clustering is scikit-learn's :class:`~sklearn.cluster.KMeans` (k-means++ initialisation, 4 restarts,
    ``random_state=seed``), one image at a time, with no position information.

    Args:
        images: ``[B, 3, H, W]`` in any range (the clustering is scale-free up to its tolerance).
        num_clusters: clusters per image: one int for all, or ``[B]`` ints (for example the number of true
            objects + 1, as :func:`colour_baseline_fg_ari` uses). Capped at the number of distinct colours.
        seed: k-means random state.

    Returns:
        ``int64 [B, H, W]`` cluster ids.

    Raises:
        TypeError: ``num_clusters`` is a bool or holds non-integers (bools, floats).
        ValueError: ``images`` is not ``[B, 3, H, W]``, ``num_clusters`` holds neither one count nor ``B``, or a
            cluster count is below 1.

    Examples:
        >>> image = torch.zeros(1, 3, 2, 2)
        >>> image[0, 0, 0] = 1.0  # top row red, bottom row black
        >>> colour_kmeans_ids(image, 2)[0].tolist() in ([[0, 0], [1, 1]], [[1, 1], [0, 0]])
        True
    """
    # imported here: the solvers and training need no scikit-learn
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W]; got {tuple(images.shape)}")
    batch, _, height, width = images.shape
    counts = torch.as_tensor(num_clusters).reshape(-1)
    if counts.dtype == torch.bool or counts.is_floating_point() or counts.is_complex():
        raise TypeError(f"num_clusters must be an int or [B] ints; got {num_clusters!r} ({counts.dtype})")
    if counts.numel() not in (1, batch):
        raise ValueError(f"num_clusters must be one int or B = {batch} ints (one per image); got "
                         f"{counts.numel()} counts")
    counts = counts.expand(batch)
    if int(counts.min()) < 1:
        raise ValueError(f"num_clusters must be a positive int or [B] positive ints; got {num_clusters!r}")
    pixels = images.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).reshape(batch, -1, 3).numpy()
    ids = torch.zeros(batch, height * width, dtype=torch.int64)
    # One thread: a thousand pixels gain nothing from more, and threads fight a training job beside them.
    with threadpool_limits(1):
        for b in range(batch):
            k = min(int(counts[b]), len(np.unique(pixels[b].round(6), axis=0)))
            if k > 1:
                labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(pixels[b])
                ids[b] = torch.from_numpy(labels.astype("int64"))
    return ids.reshape(batch, height, width)


def colour_baseline_fg_ari(images: torch.Tensor, true_ids: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """FG-ARI of :func:`colour_kmeans_ids` with k = true objects + 1 per image (the colour-only control).

    Args:
        images: ``[B, 3, H, W]``.
        true_ids: ground-truth ids ``[B, H, W]``, 0 = background.
        seed: k-means random state.

    Returns:
        ``float64 [B]`` FG-ARI per image, NaN where an image has no foreground (as :func:`fg_ari`).

    Raises:
        ValueError: ``true_ids`` is not ``[B, H, W]`` matching ``images``, or ``images`` is not ``[B, 3, H, W]``.

    Examples:
        >>> images = torch.zeros(1, 3, 4, 4)
        >>> ids = torch.zeros(1, 4, 4, dtype=torch.long)
        >>> images[0, 0, :2], ids[0, :2] = 1.0, 1  # a red object on black: colour alone finds it
        >>> images[0, 1, 2:, :2], ids[0, 2:, :2] = 1.0, 2
        >>> colour_baseline_fg_ari(images, ids).tolist()
        [1.0]
    """
    if true_ids.dim() != 3 or true_ids.shape[0] != images.shape[0] or true_ids.shape[1:] != images.shape[2:]:
        raise ValueError(f"true_ids must be [B, H, W] matching images {tuple(images.shape)}; "
                         f"got {tuple(true_ids.shape)}")
    flat = true_ids.reshape(true_ids.shape[0], -1)
    objects = torch.tensor([int(torch.unique(row[row != 0]).numel()) for row in flat])
    return fg_ari(true_ids, colour_kmeans_ids(images, objects + 1, seed=seed))
