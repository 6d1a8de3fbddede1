"""Train implicit SLATE beside vanilla SLATE on generated CLEVR-like scenes with a mirror, in one file.

    python examples/train_slate.py                          # IN (implicit) and vanilla, 300 steps each
    python examples/train_slate.py --variants IN --steps 1000

SLATE's recipe on a CPU-sized model (`cpu-small`: 64x64 images -> 16x16 = 256 dVAE tokens): the dVAE
learns with its own learning rate; slot attention (the variant picks the solver and backward mode) groups
the tokens into slots; a causal transformer predicts the tokens from the slots. Reconstruction goes through
the slot bottleneck: tokens are generated one by one from the slots (with a key/value cache), then decoded.
The figure is laid out like Figure 4 of Chang et al. (2022): ground truth, then per variant its
reconstruction and attention masks. `deqslots train --model slate` is the same with checkpoints and logs.
"""

import argparse
import math
from dataclasses import dataclass

import torch

from deqslots import SLATE, slate_config_for
from deqslots.data import generate_batch
from deqslots.evaluation.metrics import mse_per_image_sum
from deqslots.training.schedule import learning_rate
from deqslots.training.schedule import cosine_anneal
from deqslots.slate.figures import plot_slate_grid


@dataclass
class Config:
    variants: str = "IN,vanilla"  # comma-separated: vanilla | IN | BN | BB | IB
    data: str = "clevr-mirror"    # shapes | clevr-mirror | stacks | same-hue
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-4              # SLATE: everything but the dVAE, with linear warm-up
    dvae_lr: float = 3e-4         # SLATE: the dVAE, no warm-up
    warmup_steps: int = 30
    grad_clip: float = 1.0        # SLATE clips the largest gradient entry (inf-norm); 0 = off
    tau_steps: int = 150          # Gumbel temperature 1.0 -> 0.1, cosine; 0 = constant 1.0
    seed: int = 0
    figure: str = "slate_example.png"


parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
for name, default in vars(Config()).items():
    parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
cfg = Config(**vars(parser.parse_args()))

resolution = slate_config_for("cpu-small").resolution
val_images, _ = generate_batch(cfg.data, range(16), "val", resolution, cfg.seed)
panels = []
for variant in cfg.variants.split(","):
    # --- model: dVAE -> tokens -> slot attention (variant) -> image-GPT decoder
    torch.manual_seed(cfg.seed)
    model = SLATE(slate_config_for("cpu-small", variant=variant))
    groups = model.parameter_groups()
    optimizer = torch.optim.Adam([{"params": groups["dvae"], "lr": cfg.dvae_lr}, {"params": groups["main"]}])
    print(f"{variant} SLATE, {sum(p.numel() for p in model.parameters()):,} parameters")

    for step in range(cfg.steps):
        # batch `step` is always the same images, whatever happened before
        images, _ = generate_batch(cfg.data, range(step * cfg.batch_size, (step + 1) * cfg.batch_size), "train",
                                   resolution, cfg.seed)
        optimizer.param_groups[1]["lr"] = learning_rate(step, cfg.lr, cfg.warmup_steps)
        tau = cosine_anneal(step, 1.0, 0.1, cfg.tau_steps)

        losses = model(images, tau=tau)  # dVAE MSE + token cross-entropy (both summed per image)
        optimizer.zero_grad()
        losses["loss"].backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, norm_type=math.inf)
        optimizer.step()

        if step % 50 == 0 or step == cfg.steps - 1:
            out = model.reconstruct(val_images)  # eval mode, tokens generated from the slots, KV cache
            val_mse = mse_per_image_sum(out["recon"], val_images)  # per-image sum, as Table 3
            print(f"step {step:5d}  tau {tau:.2f}  CE {losses['ce']:.1f} (per token {losses['ce_per_token']:.3f})  "
                  f"dVAE MSE {losses['dvae_mse']:.1f}  val MSE through slots {val_mse:.1f}")
    panels.append((variant, out["recon"], out["masks"]))

plot_slate_grid(val_images, panels, cfg.figure)
print(f"wrote {cfg.figure}")
