"""Suite ``slot-attention``: training speed and memory per variant, data throughput against consumption:
``python -m benchmarks slot-attention [--quick] [--out DIR] [--batch-size N]``.

Method: docs/benchmarks/methods.md#slot-attention
"""

from __future__ import annotations

import time
from types import MappingProxyType

import torch

from solvers import VARIANTS
from benchmarks.suites.common import Option, RunContext, SuiteResult, Table, autoencoder, saved_bytes, step_rates
from deqslots.data import generate_batch
from deqslots.evaluation.metrics import mse_per_pixel

__all__ = ["run", "OPTIONS", "TABLES", "VARIANTS", "steps_per_second", "slot_attention_saved_bytes",
           "data_throughput"]

TABLES = MappingProxyType({"speed": ("architecture", "variant", "iters", "batch", "steps_per_s"),
                           "slot_attention_memory": ("variant", "iters", "saved_bytes", "saved_mb"),
                           "autoencoder_memory": ("variant", "iters", "saved_bytes", "saved_mb"),
                           "data": ("generator", "images_per_s", "training_images_per_s_max", "ratio")})


def steps_per_second(arch: str, variants, iters: int, images: torch.Tensor, timed: int) -> dict[str, float]:
    """Median training steps/s of each variant, timed in interleaved rounds (the first a warm-up)."""
    runs = {variant: autoencoder(arch, resolution=64, variant=variant, iters=iters) for variant in variants}
    return step_rates(runs, lambda m: mse_per_pixel(m(images)["recon"], images), timed, torch.device("cpu"))


def slot_attention_saved_bytes(variant: str, iters: int, feats: torch.Tensor) -> int:
    """Saved bytes of the slot-attention module alone (the encoder and decoder are the same for all)."""
    from deqslots import SlotAttention

    torch.manual_seed(0)
    sa = SlotAttention(feats.shape[-1], 32, 5, iters, 64, variant)
    return saved_bytes(lambda: sa(feats), distinct=False)[0]


def data_throughput(seconds: float) -> float:
    """clevr-mirror 64x64 images/s generated in batches of 32 on this process for ``seconds``."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        generate_batch("clevr-mirror", range(count, count + 32), "train", 64, 0)
        count += 32
    return count / (time.perf_counter() - start)


OPTIONS = (Option("--batch-size", "training batch (default 32; quick 16)", at_least=1, type=int),)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Speed, memory and data throughput at ``ctx.size``; ``bar`` advances once per measurement."""
    tiny, quick = ctx.size == "tiny", ctx.size == "quick"
    batch = ctx.overrides.get("batch_size") or (2 if tiny else 16 if quick else 32)
    timed = 1 if tiny else 2 if quick else 5
    archs = ["cpu-small"] if tiny or quick else ["cpu-small", "paper-64"]
    iter_counts = (1, 3) if tiny else (3, 7)
    memory_iters = (1, 3) if tiny else (1, 3, 7, 15)
    variants_small = ("vanilla", "IN") if tiny else VARIANTS
    images, _ = generate_batch("clevr-mirror", range(batch), "train", 64, 0)
    result = SuiteResult("slot-attention", {"batch_size": batch, "timed_rounds": timed, "architectures": archs})
    bar.reset(total=len(archs) * len(iter_counts) + 3)
    speed = result.tables["speed"] = Table(
        f"Training steps/s at 64x64 on clevr-mirror images, batch {batch} (forward + backward + Adam step, data "
        f"generation excluded), median of {timed} interleaved rounds after a warm-up round; iters = slot-attention "
        "iterations T. paper-64 runs vanilla and IN only.", TABLES["speed"])
    for arch in archs:
        variants = variants_small if arch == "cpu-small" else ("vanilla", "IN")
        for iters in iter_counts:
            bar.set_postfix_str(f"{arch} T={iters}")
            for variant, sps in steps_per_second(arch, variants, iters, images, timed).items():
                speed.add(architecture=arch, variant=variant, iters=iters, batch=batch, steps_per_s=sps)
            bar.update()
    feats = torch.randn(2 if tiny else 8, 64 if tiny else 256, 32)
    mem = result.tables["slot_attention_memory"] = Table(
        f"Bytes autograd saves for backward in the slot-attention module alone (B={feats.shape[0]}, "
        f"N={feats.shape[1]} inputs of 32, 5 slots of 32) as T grows: unrolled variants grow with T, implicit ones "
        "do not.", TABLES["slot_attention_memory"])
    for variant in variants_small:
        for iters in memory_iters:
            nbytes = slot_attention_saved_bytes(variant, iters, feats)
            mem.add(variant=variant, iters=iters, saved_bytes=nbytes, saved_mb=nbytes / 1e6)
    bar.update()
    whole = result.tables["autoencoder_memory"] = Table(
        f"Bytes autograd saves in the whole autoencoder (cpu-small at 64x64, B={min(8, batch)}).",
        TABLES["autoencoder_memory"])
    for variant in ("vanilla", "IN"):
        for iters in iter_counts:
            model, _ = autoencoder("cpu-small", resolution=64, variant=variant, iters=iters)
            nbytes = saved_bytes(lambda model=model: model(images[:8])["recon"], distinct=False)[0]
            whole.add(variant=variant, iters=iters, saved_bytes=nbytes, saved_mb=nbytes / 1e6)
    bar.update()
    gen = data_throughput(0.2 if tiny else 2.0 if quick else 5.0)
    fastest = max(r["steps_per_s"] for r in speed.rows if r["architecture"] == "cpu-small") * batch
    result.tables["data"] = Table(
        "clevr-mirror 64x64 generated on one process (images/s) against what the fastest cpu-small variant "
        "consumes in training (batch x steps/s).", TABLES["data"])
    result.tables["data"].add(generator="clevr-mirror 64x64", images_per_s=gen, training_images_per_s_max=fastest,
                              ratio=gen / fastest)
    bar.update()
    return result
