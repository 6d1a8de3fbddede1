"""Figures: loss curves and a grid like the paper's Figure 4 (input, reconstruction, per-slot masks)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

__all__ = ["read_metrics", "plot_loss_curves", "plot_slot_grid", "plot_segmentation_grid", "save_grid"]


def read_metrics(path: Union[str, Path]) -> dict[str, list[float]]:
    """Columns of a metrics.csv as float lists (empty cells become NaN).

    Args:
        path: a CSV file with a header row and numeric cells (e.g. a training run's metrics.csv).

    Returns:
        Each column's values in row order, by header name; ``{}`` for a file without data rows.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from deqslots.evaluation.figures import read_metrics
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "metrics.csv"
        ...     _ = path.write_text("step,loss,val_mse\\n1,0.5,\\n2,0.25,0.1\\n")
        ...     read_metrics(path)
        {'step': [1.0, 2.0], 'loss': [0.5, 0.25], 'val_mse': [nan, 0.1]}
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows] for key in rows[0]}


def plot_loss_curves(runs: dict[str, Union[str, Path]], out: Union[str, Path], key: str = "loss",
                     smooth: int = 20, title: Optional[str] = None, log: bool = True) -> Path:
    """One curve per run (label -> metrics.csv), moving-average smoothed, log scale.

    Rows whose ``key`` cell is empty (NaN) are dropped; a run with none left draws no curve.

    Args:
        runs: legend label -> path of that run's metrics.csv (with a ``step`` column).
        out: the image path (format from its suffix, e.g. ``.png``).
        key: the column to plot, e.g. ``"loss"`` or ``"val_mse"``.
        smooth: moving-average window in rows (capped at the number of values; 1 = raw); the curve starts at
            the window's last step.
        title: the plot title (None: ``key``).
        log: a logarithmic y axis.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from deqslots.evaluation.figures import plot_loss_curves
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     csv = Path(tmp) / "metrics.csv"
        ...     _ = csv.write_text("step,loss\\n1,0.5\\n2,0.25\\n3,0.125\\n")
        ...     out = plot_loss_curves({"IN": csv}, Path(tmp) / "loss_curve.png", smooth=2)
        ...     out.name, out.stat().st_size > 0
        ('loss_curve.png', True)
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, path in runs.items():
        m = read_metrics(path)
        steps, values = m["step"], m[key]
        pairs = [(s, v) for s, v in zip(steps, values) if v == v]
        if not pairs:
            continue
        steps, values = zip(*pairs)
        t = torch.tensor(values)
        k = max(1, min(smooth, len(t)))
        smoothed = torch.nn.functional.avg_pool1d(t[None, None], k, stride=1).flatten().tolist() if k > 1 else values
        ax.plot(steps[k - 1:], smoothed, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or key)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _on_white(mask: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """A slot's colour [3, H, W] where its mask [H, W] holds, faded to white where it does not."""
    return mask.unsqueeze(0) * rgb + (1 - mask.unsqueeze(0))


def plot_slot_grid(images: torch.Tensor, recon: torch.Tensor, masks: torch.Tensor, rgb: torch.Tensor,
                   out: Union[str, Path], rows: int = 4, titles: Sequence[str] = ()) -> Path:
    """Input, reconstruction and each slot's masked RGB, one row per image (the paper's Figure 4 layout).

    Args:
        images: [B, 3, H, W] in [0, 1].
        recon: the reconstructions, [B, 3, H, W] in [0, 1].
        masks: [B, K, H, W] summing to one over K.
        rgb: [B, K, 3, H, W] per-slot colours in [0, 1].
        out: the PNG path.
        rows: how many images, from the first (capped at B).
        titles: the column headers (default: "input", "recon", "slot 1", ..., "slot K").

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import torch
        >>> from deqslots.evaluation.figures import plot_slot_grid
        >>> images = torch.rand(2, 3, 8, 8)
        >>> masks = torch.rand(2, 3, 8, 8).softmax(dim=1)
        >>> rgb = torch.rand(2, 3, 3, 8, 8)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = plot_slot_grid(images, images, masks, rgb, Path(tmp) / "slots.png", rows=1)
        ...     out.name, out.is_file()
        ('slots.png', True)
    """
    rows = min(rows, images.shape[0])
    k = masks.shape[1]
    fig, axes = plt.subplots(rows, k + 2, figsize=(1.4 * (k + 2), 1.4 * rows), squeeze=False)
    show = lambda ax, img: ax.imshow(img.permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # noqa: E731
    for r in range(rows):
        show(axes[r, 0], images[r])
        show(axes[r, 1], recon[r])
        for j in range(k):
            show(axes[r, j + 2], _on_white(masks[r, j], rgb[r, j]))
    header = list(titles) or ["input", "recon"] + [f"slot {j + 1}" for j in range(k)]
    return save_grid(fig, axes, header, out, fontsize=8)


def plot_segmentation_grid(model: torch.nn.Module, data: str, out: Union[str, Path], split: str = "test",
                           rows: int = 6, seed: int = 0) -> dict[str, float]:
    """Segment ``rows`` generated scenes of ``data`` and draw input, true objects, the model's segmentation
    (argmax of its masks), the colour-only control's segmentation (k-means on pixel RGB with k = true objects
    + 1, :func:`deqslots.evaluation.metrics.colour_kmeans_ids`), the model's reconstruction and each slot's masked
    colour, with the FG-ARI of both segmentations per row.

    Args:
        model: a :class:`deqslots.SlotAutoencoder`.
        data: a procedural data set name (it must give masks).
        out: PNG path.
        split: which scenes: the first ``rows`` of this split...
        rows: (one scene per row)...
        seed: ...of this data seed (which also seeds the slot noise and the k-means).

    Returns:
        ``{"fg_ari": mean over the rows, "colour_fg_ari": the colour control's mean over the same rows}``.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import torch
        >>> from deqslots.evaluation.figures import plot_segmentation_grid
        >>> from deqslots.slot_attention import SlotAutoencoder, config_for
        >>> _ = torch.manual_seed(0)
        >>> model = SlotAutoencoder(config_for("cpu-small", resolution=16, num_slots=3, iters=2))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     scores = plot_segmentation_grid(model, "shapes", Path(tmp) / "segmentations.png", rows=1)
        >>> sorted(scores)
        ['colour_fg_ari', 'fg_ari']
    """
    from ..data import generate_batch
    from .eval_mode import seeded_eval
    from .metrics import colour_kmeans_ids, fg_ari

    resolution = model.config.resolution
    images, true_ids = generate_batch(data, range(rows), split, resolution, seed)
    with seeded_eval(model, seed), torch.no_grad():
        result = model(images.to(next(model.parameters()).device))
    masks, rgb, recon = (result[key].cpu() for key in ("masks", "rgb", "recon"))
    pred = masks.argmax(dim=1)
    scores = fg_ari(true_ids, pred)
    objects = torch.tensor([int(torch.unique(ids[ids != 0]).numel()) for ids in true_ids])
    colour = colour_kmeans_ids(images, objects + 1, seed=seed)
    colour_scores = fg_ari(true_ids, colour)
    k = masks.shape[1]
    palette = torch.tensor(plt.get_cmap("tab20").colors[: max(k, int(true_ids.max()) + 1)])
    paint = lambda ids: palette[ids % len(palette)].permute(2, 0, 1)  # noqa: E731  [H, W] ids -> [3, H, W]
    fig, axes = plt.subplots(rows, k + 5, figsize=(1.3 * (k + 5), 1.3 * rows), squeeze=False)
    show = lambda ax, img: ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())  # noqa: E731
    for r in range(rows):
        show(axes[r, 0], images[r])
        show(axes[r, 1], paint(true_ids[r]))
        for col, ids, score in ((2, pred[r], scores[r]), (3, colour[r], colour_scores[r])):
            show(axes[r, col], paint(ids + 1))
            axes[r, col].text(1, 4, f"{float(score):.2f}", fontsize=7, color="white",
                              bbox=dict(facecolor="black", alpha=0.6, pad=1, linewidth=0))
        show(axes[r, 4], recon[r])
        for j in range(k):
            show(axes[r, j + 5], _on_white(masks[r, j], rgb[r, j]))
    header = ["input", "objects", "segmentation", "colour k-means", "recon"] + [f"slot {j + 1}" for j in range(k)]
    save_grid(fig, axes, header, out, fontsize=7)
    return {"fg_ari": float(torch.nanmean(scores)), "colour_fg_ari": float(torch.nanmean(colour_scores))}


def save_grid(fig, axes, header: Sequence[str], out: Union[str, Path], fontsize: int = 8) -> Path:
    """Title the first row of an image grid, hide the axes, save it as PNG and close the figure.

    Args:
        fig (matplotlib.figure.Figure): the figure.
        axes (numpy.ndarray): its 2-D array of axes, ``[rows, columns]`` (``plt.subplots(..., squeeze=False)``).
        header: the titles of the first row's columns, from the left (at most one per column).
        out: the image path (format from its suffix).
        fontsize: the titles' font size.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import matplotlib.pyplot as plt
        >>> from deqslots.evaluation.figures import save_grid
        >>> fig, axes = plt.subplots(1, 2, squeeze=False)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = save_grid(fig, axes, ["input", "recon"], Path(tmp) / "grid.png")
        ...     out.name, out.is_file()
        ('grid.png', True)
    """
    for j, name in enumerate(header):
        axes[0, j].set_title(name, fontsize=fontsize)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
