"""Suite ``profile``: where a training step of the slot-attention autoencoder spends its time, phase by phase,
before and after ``cpu-small`` changed:
``python -m benchmarks profile [--steps N] [--threads T] [--profile-steps P] [--out DIR]``.

Method: docs/benchmarks/methods.md#profile
"""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time
from types import MappingProxyType
from typing import Optional, Sequence

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.suites.common import Option, RunContext, SuiteResult, Table, by_size
from deqslots.slot_attention.config import AutoencoderConfig, config_for
from deqslots.slot_attention.autoencoder import SlotAutoencoder
from deqslots.data.batches import BatchStream
from deqslots.evaluation.metrics import mse_per_pixel

__all__ = ["PHASES", "PHASE_LABELS", "before_config", "after_config", "describe", "build_arms", "Arm", "StepProfiler",
           "run", "OPTIONS", "TABLES"]

# Phases of one step, in the order they run (rows of the phases table).
PHASES = ("data", "encoder", "slot_attention", "decoder", "backward_decoder", "backward_slot_attention",
          "backward_encoder", "optimizer")
PHASE_LABELS = MappingProxyType({
    "data": "data (BatchStream.batch)",
    "encoder": "encoder (model.encode)",
    "slot_attention": "slot attention",
    "decoder": "decoder (model.decode, mixture, loss)",
    "backward_decoder": "backward: decoder + loss",
    "backward_slot_attention": "backward: slot attention",
    "backward_encoder": "backward: encoder",
    "optimizer": "optimizer (zero_grad, grad norm, Adam)",
})
ARM_COLUMNS = ("arm", "description", "batch_size", "parameters", "steps", "step_ms", "step_ms_median", "steps_per_s",
               "images_per_s", "loss_first", "loss_last")
TABLES = MappingProxyType({
    "phases": None,  # phase, label, then ms and % of each architecture
    "arms": ARM_COLUMNS,
    "top_ops": ("arm", "op", "self_cpu_ms", "self_cpu_pct", "cpu_total_ms", "calls"),
    "regions": ("arm", "region", "cpu_ms"),
})
# record_function names; excluded from the top-ops tables (their self time is Python between ops).
_REGIONS = ("data", "encoder", "slot_attention", "decoder", "optimizer", "backward", "backward/decoder",
            "backward/slot_attention", "backward/encoder")
DATA = "shapes"
LR = 4e-4  # Slot Attention's peak rate (TrainConfig's default); the value does not change the cost


def before_config(resolution: int = 32) -> AutoencoderConfig:
    """The previous ``cpu-small`` (variant IN), spelled out since ``CONFIGS`` now holds the new one."""
    return AutoencoderConfig(resolution=resolution, channels=32, encoder_strides=(2, 1, 1, 1), num_slots=5,
                             slot_dim=32, mlp_hidden=64, iters=3, variant="IN", **AutoencoderConfig.LEGACY)


def after_config(resolution: int = 32) -> AutoencoderConfig:
    """The current ``cpu-small`` (variant IN); another ``resolution`` scales its decoder's size alike."""
    config = config_for("cpu-small", variant="IN")
    if resolution == config.resolution:
        return config
    changes: dict = {"resolution": resolution}
    if config.decoder_resolution is not None:  # keep the decoder's size relative to the image's
        changes["decoder_resolution"] = max(config.broadcast, config.decoder_resolution * resolution
                                            // config.resolution)
    return config.replace(**changes)


class _BackwardSplit:
    """Timestamps where one ``backward()`` call crosses the decoder -> slot attention -> encoder boundaries.

    The hooks also switch ``record_function`` regions so that the profiler trace shows the same split;
    they run on the thread that called ``backward()`` (CPU autograd), so the regions nest properly in
    the enclosing ``backward`` region.
    """

    def __init__(self, decoder_inputs: Sequence[torch.Tensor], features: torch.Tensor) -> None:
        self.pending = len(decoder_inputs)
        self.decoder_done: Optional[float] = None
        self.slot_attention_done: Optional[float] = None
        self._region: Optional[record_function] = None
        for tensor in decoder_inputs:
            tensor.register_hook(self._decoder_input_reached)
        features.register_hook(self._features_reached)

    def _switch(self, name: Optional[str]) -> None:
        if self._region is not None:
            self._region.__exit__(None, None, None)
        self._region = record_function(name) if name else None
        if self._region is not None:
            self._region.__enter__()

    def _decoder_input_reached(self, grad: torch.Tensor) -> None:
        self.pending -= 1
        if self.pending == 0:  # the decoder's last input got its whole gradient: its backward is over
            self.decoder_done = time.perf_counter()
            self._switch("backward/slot_attention")

    def _features_reached(self, grad: torch.Tensor) -> None:
        self.slot_attention_done = time.perf_counter()
        self._switch("backward/encoder")

    def backward(self, loss: torch.Tensor) -> tuple[float, float]:
        """Runs ``loss.backward()``; returns the ``perf_counter`` times the decoder's and slot attention's ended."""
        self._switch("backward/decoder")
        loss.backward()
        self._switch(None)
        if self.decoder_done is None or self.slot_attention_done is None:
            raise RuntimeError("a backward boundary hook did not fire: the model's graph is not "
                               "encoder -> slot attention -> decoder")
        return self.decoder_done, self.slot_attention_done


@dataclasses.dataclass
class Arm:
    """One architecture under test: model, optimiser and data stream, advanced one training step at a time.

    Attributes:
        name: "before" or "after".
        description: one line for the report.
        config: the model's architecture.
        batch_size: images per step.
        data: procedural data set name.
        seed: initialisation and data seed.
    """

    name: str
    description: str
    config: AutoencoderConfig
    batch_size: int
    data: str = DATA
    seed: int = 0

    def __post_init__(self) -> None:
        torch.manual_seed(self.seed)
        self.model = SlotAutoencoder(self.config)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.stream = BatchStream(self.data, "train", self.config.resolution, self.batch_size, self.seed)
        self.step_index = 0
        self.losses: list[float] = []


class StepProfiler:
    """Runs training steps of an :class:`Arm` and records the seconds of each phase."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self.seconds: dict[str, list[float]] = {p: [] for p in PHASES}

    def step(self, record: bool = True) -> dict[str, float]:
        """One training step, as ``deqslots.training.loop`` runs it; returns (and if ``record`` keeps) phase seconds."""
        arm, model = self.arm, self.arm.model
        t0 = time.perf_counter()
        with record_function("data"):
            images = arm.stream.batch(arm.step_index)["image"]
        t1 = time.perf_counter()
        with record_function("encoder"):
            feats = model.encode(images)
        t2 = time.perf_counter()
        with record_function("slot_attention"):
            slots, attn = model.slot_attention(feats, return_attn=True)
        t3 = time.perf_counter()
        with record_function("decoder"):
            # Aliases: hooks on them fire when the decoder's gradient alone is complete (slots also get
            # gradient from the attention, which is slot attention's own work).
            dec_slots, dec_attn = slots.view_as(slots), attn.view_as(attn)
            out = model.decode(dec_slots, dec_attn)
            loss = mse_per_pixel(out["recon"], images)
        t4 = time.perf_counter()
        with record_function("optimizer"):
            arm.optimizer.zero_grad(set_to_none=True)
        # the attention feeds the decoder only when the masks come from it
        decoder_inputs = [dec_slots] + ([dec_attn] if model.config.mask_source == "attention" else [])
        split = _BackwardSplit(decoder_inputs, feats)
        t5 = time.perf_counter()
        with record_function("backward"):
            decoder_done, slot_attention_done = split.backward(loss)
        t6 = time.perf_counter()
        with record_function("optimizer"):
            # training computes the norm every step (for metrics.csv and the non-finite check), clipped or not
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
            if torch.isfinite(grad_norm):
                arm.optimizer.step()
        t7 = time.perf_counter()
        arm.step_index += 1
        arm.losses.append(float(loss.detach()))
        phases = {"data": t1 - t0, "encoder": t2 - t1, "slot_attention": t3 - t2, "decoder": t4 - t3,
                  "backward_decoder": decoder_done - t5, "backward_slot_attention": slot_attention_done - decoder_done,
                  "backward_encoder": t6 - slot_attention_done, "optimizer": t7 - t4 - (t6 - t5)}
        # the phases tile the step [t0, t7] (hook set-up counts as optimizer time, a few microseconds)
        if record:
            for key in PHASES:
                self.seconds[key].append(phases[key])
        return phases

    def summary(self) -> dict:
        """Mean ms per step and share of the step per phase, and steps/s."""
        step_ms = sum(statistics.fmean(self.seconds[p]) for p in PHASES) * 1e3
        phases = {}
        for p in PHASES:
            ms = statistics.fmean(self.seconds[p]) * 1e3
            phases[p] = {"ms": round(ms, 3), "pct": round(100.0 * ms / step_ms, 2)}
        totals = [sum(self.seconds[p][i] for p in PHASES) for i in range(len(self.seconds["data"]))]
        return {"steps": len(totals), "step_ms": round(step_ms, 3),
                "step_ms_median": round(statistics.median(totals) * 1e3, 3),
                "steps_per_s": round(1e3 / step_ms, 4), "phases": phases}


def _profile(profiler: StepProfiler, steps: int, count: int = 10) -> tuple[list[dict], dict[str, float], str]:
    """Profiled steps: the ``count`` ops with the most self CPU time per step (our own regions left out), the
    CPU ms per step of each of our regions as the profiler saw them (a cross-check of the timings), and
    torch.profiler's own table."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            profiler.step(record=False)
    averages = prof.key_averages()
    events = [e for e in averages if e.key not in _REGIONS and not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    top = [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3 / steps, 3),
            "self_cpu_pct": round(100.0 * e.self_cpu_time_total / total, 2),
            "cpu_total_ms": round(e.cpu_time_total / 1e3 / steps, 3), "calls": round(e.count / steps, 2)}
           for e in events[:count]]
    regions = {e.key: round(e.cpu_time_total / 1e3 / steps, 3) for e in averages if e.key in _REGIONS}
    return top, regions, averages.table(sort_by="self_cpu_time_total", row_limit=12)


def describe(config: AutoencoderConfig) -> str:
    """One line on an architecture's shape, for the report."""
    c, grid = config, config.resolution // math.prod(config.encoder_strides)
    k, dk, size = c.encoder_kernel, c.decoder_kernel, c.decoder_size
    resize = f" + bilinear resize to {c.resolution}x{c.resolution}" if size < c.resolution else ""
    return (f"{c.resolution}x{c.resolution} images, {len(c.encoder_strides)} {k}x{k} encoder convs "
            f"(strides {','.join(map(str, c.encoder_strides))}) -> {grid}x{grid} grid, {c.num_slots} slots x "
            f"{c.slot_dim}, T={c.iters}, decoder {c.broadcast}x{c.broadcast} -> {size}x{size} ({dk}x{dk} transposed "
            f"convs, {c.decoder_refine} refine){resize}, masks from the {c.mask_source}")


def build_arms(tiny: bool = False) -> list[Arm]:
    """The two architectures; ``tiny`` shrinks images and batches so a run takes a second or two (tests)."""
    res = 16 if tiny else 32
    arms = []
    for name, label, config, batch in (("before", "previous cpu-small", before_config(res), 32),
                                       ("after", "current cpu-small", after_config(res), 16)):
        arms.append(Arm(name, f"{label}: {describe(config)}", config, 2 if tiny else batch))
    return arms


OPTIONS = (
    Option("--steps", "timed steps per architecture (default 30; quick 5)", at_least=1, type=int),
    Option("--profile-steps", "steps per architecture under torch.profiler for the top-ops tables (default 5; quick 2)",
           at_least=1, type=int),
    Option("--warmup", "untimed steps per architecture first (default 2)", at_least=0, type=int),
)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Profile both architectures at ``ctx.size``; ``bar`` advances once when done."""
    o, tiny = ctx.overrides, ctx.size == "tiny"
    steps = o.get("steps") or by_size(ctx.size, 2, 5, 30)
    profile_steps = o.get("profile_steps") or by_size(ctx.size, 1, 2, 5)
    warmup = o["warmup"] if o.get("warmup") is not None else (1 if tiny else 2)
    bar.reset(total=1)
    profilers = [StepProfiler(arm) for arm in build_arms(tiny)]
    for _ in range(warmup):
        for p in profilers:
            p.step(record=False)
    gc.collect()
    for round_ in range(steps):
        # alternate the order so that neither architecture always runs right after the other
        for p in (profilers if round_ % 2 == 0 else profilers[::-1]):
            p.step()
    cfg, texts = {}, []
    for p in profilers:
        c = cfg[p.arm.name] = p.summary()
        bar.set_postfix_str(f"{p.arm.name}: {c['steps_per_s']:.3f} steps/s ({c['step_ms']:.1f} ms/step); profiling "
                            f"{profile_steps} steps")
        c["top_ops"], c["regions"], text = _profile(p, profile_steps)
        texts.append(f"## {p.arm.name}\n{text}")
    (ctx.out / "profiler_tables.txt").write_text("\n\n".join(texts))
    bar.update()
    arms = {p.arm.name: p.arm for p in profilers}
    result = SuiteResult("profile", {"data": DATA, "warmup_steps": warmup, "profile_steps": profile_steps,
                                     "tiny": tiny, "model_configs": {n: dataclasses.asdict(a.config)
                                                                     for n, a in arms.items()}})
    parameters = {n: sum(q.numel() for q in a.model.parameters()) for n, a in arms.items()}
    result.notes += [f"{n} (batch {a.batch_size}, {parameters[n]:,} parameters): {a.description}"
                     for n, a in arms.items()]
    columns = ("phase", "label", *(f"{n}_{unit}" for n in arms for unit in ("ms", "pct")))
    phases = result.tables["phases"] = Table(
        f"Mean ms per training step and share of the step per phase, variant IN on {DATA}, over {steps} timed "
        f"steps per architecture (after {warmup} warm-up steps; interleaved rounds, profiler off). The backward is "
        "split by gradient hooks at the component boundaries (docs/benchmarks/methods.md#profile); the phases "
        "tile the step (last row).", columns)
    for phase in PHASES:
        phases.add(phase=phase, label=PHASE_LABELS[phase],
                   **{f"{n}_{unit}": cfg[n]["phases"][phase][unit] for n in arms for unit in ("ms", "pct")})
    phases.add(phase="step", label="step", **{f"{n}_{unit}": cfg[n]["step_ms"] if unit == "ms" else 100.0
                                               for n in arms for unit in ("ms", "pct")})
    table = result.tables["arms"] = Table("Per architecture: the model, steps/s (= 1000 / mean step ms) and the "
                                          "training loss of the first and last profiled steps.", ARM_COLUMNS)
    ops = result.tables["top_ops"] = Table(
        f"Top 10 ops by self CPU time per architecture (torch.profiler key_averages over {profile_steps} profiled "
        "steps, per step; our record_function regions left out).", TABLES["top_ops"])
    regions = result.tables["regions"] = Table(
        "CPU ms per step of each record_function region as torch.profiler saw it (a cross-check of the timings).",
        TABLES["regions"], in_report=False)
    for n, a in arms.items():
        c = cfg[n]
        table.add(arm=n, description=a.description, batch_size=a.batch_size, parameters=parameters[n],
                  steps=c["steps"], step_ms=c["step_ms"], step_ms_median=c["step_ms_median"],
                  steps_per_s=c["steps_per_s"], images_per_s=c["steps_per_s"] * a.batch_size,
                  loss_first=round(a.losses[0], 6), loss_last=round(a.losses[-1], 6))
        for op in c["top_ops"]:
            ops.add(arm=n, **op)
        for region, ms in c["regions"].items():
            regions.add(arm=n, region=region, cpu_ms=ms)
    return result
