"""Slot-attention training speed and memory per variant, and data throughput against consumption.

    python -m benchmarks.slot_attention_perf [--quick] [--out DIR]

Measures, on this machine's CPU, for the object-discovery autoencoder at 64x64 (architecture `cpu-small`
at resolution 64, and optionally Slot Attention's `paper-64`), batch 32:
- training steps/s of each variant at 3 and 7 slot-attention iterations (median of timed steps after a
  warm-up step; forward + backward + Adam step, data generation excluded);
- bytes autograd saves during the forward pass, per variant, as the iteration count grows (1, 3, 7, 15);
- generation throughput of clevr-mirror at 64x64 against what training consumes (batch x steps/s).
Writes DIR/results.json and DIR/report.md (default runs/bench/slot_attention_perf).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from deqslots import SlotAutoencoder, config_for
from deqslots.data import generate_batch
from deqslots.metrics import mse_per_pixel

VARIANTS = ("vanilla", "IN", "BN", "BB", "IB")


def _model(arch: str, variant: str, iters: int) -> SlotAutoencoder:
    torch.manual_seed(0)
    return SlotAutoencoder(config_for(arch, resolution=64, variant=variant, iters=iters))


def steps_per_second(arch: str, variants, iters: int, images: torch.Tensor, timed: int) -> dict[str, float]:
    """Median training steps/s of each variant, timed in interleaved rounds.

    One step of every variant per round (order alternating between rounds), so that load from other
    processes on the machine hits all variants alike; the first round is a warm-up.
    """
    runs = {}
    for variant in variants:
        model = _model(arch, variant, iters)
        runs[variant] = (model, torch.optim.Adam(model.parameters(), lr=1e-4))
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(timed + 1):
        order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
        for variant in order:
            model, opt = runs[variant]
            start = time.perf_counter()
            loss = mse_per_pixel(model(images)["recon"], images)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if round_:
                times[variant].append(time.perf_counter() - start)
    return {v: 1.0 / statistics.median(t) for v, t in times.items()}


def _saved_during(run) -> int:
    """Bytes autograd saves for backward while ``run()`` builds its graph (then backpropagates)."""
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    out.sum().backward()
    return total[0]


def saved_bytes(arch: str, variant: str, iters: int, images: torch.Tensor) -> int:
    model = _model(arch, variant, iters)
    return _saved_during(lambda: model(images)["recon"])


def slot_attention_saved_bytes(variant: str, iters: int, feats: torch.Tensor) -> int:
    """Saved bytes of the slot-attention module alone (the encoder and decoder are the same for all)."""
    from deqslots import SlotAttention

    torch.manual_seed(0)
    sa = SlotAttention(feats.shape[-1], 32, 5, iters, 64, variant)
    return _saved_during(lambda: sa(feats))


def data_throughput(seconds: float) -> float:
    count, start, index = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        generate_batch("clevr-mirror", range(index, index + 32), "train", 64, 0)
        index += 32
        count += 32
    return count / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer timed steps, no paper-64 architecture")
    parser.add_argument("--out", default="runs/bench/slot_attention_perf")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timed = 2 if args.quick else 5
    archs = ["cpu-small"] if args.quick else ["cpu-small", "paper-64"]
    images, _ = generate_batch("clevr-mirror", range(args.batch_size), "train", 64, 0)

    speed = {}
    for arch in archs:
        variants = VARIANTS if arch == "cpu-small" else ("vanilla", "IN")
        for iters in (3, 7):
            measured = steps_per_second(arch, variants, iters, images, timed if arch == "cpu-small" else 2)
            for variant, sps in measured.items():
                speed[f"{arch}/{variant}/T={iters}"] = sps
                print(f"{arch:9s} {variant:7s} T={iters}: {sps:.3f} steps/s", flush=True)

    feats = torch.randn(8, 256, 32)
    memory = {}
    for variant in VARIANTS:
        for iters in (1, 3, 7, 15):
            memory[f"{variant}/T={iters}"] = slot_attention_saved_bytes(variant, iters, feats)
    model_memory = {f"{v}/T={t}": saved_bytes("cpu-small", v, t, images[:8]) for v in ("vanilla", "IN") for t in (3, 7)}

    gen = data_throughput(2.0 if args.quick else 5.0)
    consumption = max(speed[f"cpu-small/{v}/T=3"] for v in VARIANTS) * args.batch_size

    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "python": sys.version.split()[0]},
        "command": "python -m benchmarks.slot_attention_perf" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_1min": os.getloadavg()[0],
        "batch_size": args.batch_size,
        "steps_per_s": speed,
        "slot_attention_saved_bytes": memory,
        "autoencoder_saved_bytes": model_memory,
        "clevr_mirror_64_images_per_s": gen,
        "training_images_per_s_max": consumption,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(report(results, archs))
    print(report(results, archs))
    return results


def report(r: dict, archs) -> str:
    lines = ["## Slot-attention training speed (64x64, batch %d, CPU)" % r["batch_size"], "",
             "| architecture | variant | steps/s T=3 | steps/s T=7 |", "|---|---|---|---|"]
    for arch in archs:
        for v in VARIANTS:
            if f"{arch}/{v}/T=3" in r["steps_per_s"]:
                lines.append(f"| {arch} | {v} | {r['steps_per_s'][f'{arch}/{v}/T=3']:.3f} | "
                             f"{r['steps_per_s'][f'{arch}/{v}/T=7']:.3f} |")
    lines += ["", "## Bytes saved for backward by slot attention (B=8, N=256, 5 slots of 32)", "",
              "| variant | T=1 | T=3 | T=7 | T=15 |", "|---|---|---|---|---|"]
    for v in VARIANTS:
        lines.append(f"| {v} | " + " | ".join(f"{r['slot_attention_saved_bytes'][f'{v}/T={t}'] / 1e6:.2f} MB"
                                              for t in (1, 3, 7, 15)) + " |")
    lines += ["", "Whole autoencoder (cpu-small at 64x64, B=8): " + ", ".join(
        f"{k} {b / 1e6:.1f} MB" for k, b in r["autoencoder_saved_bytes"].items()), "",
        f"Data: clevr-mirror 64x64 generated at {r['clevr_mirror_64_images_per_s']:.0f} images/s on one "
        f"process; the fastest training variant consumes {r['training_images_per_s_max']:.0f} images/s "
        f"(ratio {r['clevr_mirror_64_images_per_s'] / r['training_images_per_s_max']:.1f}x)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
