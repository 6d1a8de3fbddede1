"""Draw the pretrained-models gallery of the documentation from the shipped weights.

    python docs/scripts/gallery.py            # writes docs/images/pretrained/NAME.png and docs/pretrained-gallery.md

Each shipped model draws its own scene figure (its kind's ``scene_figure``: slot attention's segmentation grid,
SLATE's slots grid) on 6 generated test scenes of its data set, seed 0, and the page lists each model's command
and documented figures from the registry (:data:`deqslots.pretrained.PRETRAINED`), so nothing on the page is
pasted. Run it again after a model is re-exported; about a minute on one CPU core (it draws; it does not train).
"""

from __future__ import annotations

from pathlib import Path

import torch

from deqslots.pretrained import PRETRAINED, load_pretrained
from deqslots.training.registry import model_kind

DOCS = Path(__file__).resolve().parents[1]
IMAGES = DOCS / "images" / "pretrained"


def main() -> None:
    torch.set_num_threads(1)
    IMAGES.mkdir(parents=True, exist_ok=True)
    sections = []
    for name, entry in PRETRAINED.items():
        kind = model_kind(entry.model)
        scores = kind.scene_figure(load_pretrained(name), entry.data, IMAGES / f"{name}.png", split="test", rows=6)
        measured = f"FG-ARI {scores['fg_ari']:.3f} (colour-only control {scores['colour_fg_ari']:.3f})"
        sections.append(
            f"## `{name}`\n\n{kind.title}, variant {entry.variant}, trained on `{entry.data}`: {entry.steps:,} steps "
            f"({entry.seconds / 60:.0f} min on a 2-core CPU). On the fixed test batch (4 x 64 scenes): FG-ARI "
            f"{entry.fg_ari:.3f}, MSE {entry.mse:.2e}. On the 6 scenes below: {measured}.\n\n"
            f"```bash\n{entry.command}\n```\n\n![{name}](images/pretrained/{name}.png)\n")
        print(f"{name}: {measured}")
    page = DOCS / "pretrained-gallery.md"
    page.write_text("# Gallery of the shipped models\n\n<!-- written by docs/scripts/gallery.py: do not edit -->\n\n"
                    "Each shipped model on 6 generated test scenes of its data set (seed 0), drawn from the shipped "
                    "weights by `python docs/scripts/gallery.py`; its command and its documented figures come from "
                    "the registry (`deqslots.pretrained.PRETRAINED`). Slot attention: input, true objects, the "
                    "model's segmentation, the colour-only control's, the reconstruction, each slot. SLATE: input, "
                    "the dVAE's reconstruction, the reconstruction through the slots, each slot's attention mask.\n\n"
                    + "\n".join(sections))
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
