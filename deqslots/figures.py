"""Figures: loss curves and a grid like the paper's Figure 4 (input, reconstruction, per-slot masks)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

__all__ = ["read_metrics", "plot_loss_curves", "plot_slot_grid", "save_grid"]


def read_metrics(path: Union[str, Path]) -> dict[str, list[float]]:
    """Columns of a metrics.csv as float lists (empty cells become NaN)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows] for key in rows[0]}


def plot_loss_curves(runs: dict[str, Union[str, Path]], out: Union[str, Path], key: str = "loss",
                     smooth: int = 20, title: Optional[str] = None, log: bool = True) -> Path:
    """One curve per run (label -> metrics.csv), moving-average smoothed, log scale."""
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


def plot_slot_grid(images: torch.Tensor, recon: torch.Tensor, masks: torch.Tensor, rgb: torch.Tensor,
                   out: Union[str, Path], rows: int = 4, titles: Sequence[str] = ()) -> Path:
    """Input, reconstruction and each slot's masked RGB, one row per image (the paper's Figure 4 layout).

    Args:
        images, recon: [B, 3, H, W] in [0, 1].
        masks: [B, K, H, W] summing to one over K.
        rgb: [B, K, 3, H, W] per-slot colours in [0, 1].
    """
    rows = min(rows, images.shape[0])
    k = masks.shape[1]
    fig, axes = plt.subplots(rows, k + 2, figsize=(1.4 * (k + 2), 1.4 * rows), squeeze=False)
    show = lambda ax, img: ax.imshow(img.permute(1, 2, 0).clamp(0, 1).cpu().numpy())  # noqa: E731
    for r in range(rows):
        show(axes[r, 0], images[r])
        show(axes[r, 1], recon[r])
        for j in range(k):
            show(axes[r, j + 2], masks[r, j].unsqueeze(0) * rgb[r, j] + (1 - masks[r, j].unsqueeze(0)))
    header = list(titles) or ["input", "recon"] + [f"slot {j + 1}" for j in range(k)]
    return save_grid(fig, axes, header, out, fontsize=8)


def save_grid(fig, axes, header: Sequence[str], out: Union[str, Path], fontsize: int = 8) -> Path:
    """Title the first row of an image grid, hide the axes, save it as PNG and close the figure."""
    for j, name in enumerate(header):
        axes[0, j].set_title(name, fontsize=fontsize)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
