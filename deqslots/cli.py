"""The ``deqslots`` command line: demo, train, eval, data convert."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .training.strict_json import dumps as strict_json  # NaN (an undefined FG-ARI) -> null

__all__ = ["main", "build_parser"]


def _optional_float(text: str) -> Optional[float]:
    # "off" is 0 (no clipping) rather than None, which means "the model's default" (SLATE clips at 1.0)
    return 0.0 if text.lower() in ("none", "off") else float(text)


def _train_parser(commands) -> None:
    from .training.registry import MODELS
    from .training.config import TrainConfig

    d = TrainConfig()
    p = commands.add_parser("train", help="train a model; writes metrics.csv, checkpoint.pt and figures to --out")
    p.add_argument("--model", default=d.model, choices=list(MODELS))
    p.add_argument("--variant", default=d.variant, choices=["vanilla", "IN", "BN", "BB", "IB"])
    p.add_argument("--data", default=d.data,
                   help="shapes | clevr-mirror | stacks | same-hue (generated); on disk: folder:PATH, hdf5:PATH, "
                   "tfrecord:[NAME:]PATH, coco:ANNOTATIONS.json:IMAGES, clevr-mirror:PATH, shapestacks:PATH")
    p.add_argument("--config", default=d.config,
                   help="named architecture: cpu-small, cpu-objects, cpu-small-decoder-masks, paper-32, paper-64, "
                   "paper-128 (slot-attention); cpu-small, cpu-slate, paper-64, paper-96 (slate). Slot attention's "
                   "paper-* are the authors' model and train with the authors' recipe (500000 steps, batch 64, "
                   "Adam 4e-4, warm-up 10000, lr halved every 100000 steps, no clipping; evaluation every 5000 "
                   "steps on 8 batches), its cpu-* with the CPU recipe (docs/slot-attention.md); SLATE's paper-* are "
                   "SLATE's model with SLATE's recipe (250000 steps, batch 50, lr 1e-4 / dVAE 3e-4, warm-up and tau "
                   "over 30000 steps, --lr-plateau-patience 4); flags override either")
    p.add_argument("--set", dest="config_set", default="", metavar="FIELD=VALUE,...",
                   help="change other fields of the named architecture, e.g. --set decoder_position_frequencies=3,"
                   "attention_guidance_steps=5000 (see deqslots.slot_attention.config.AutoencoderConfig)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--iters", type=int, default=None, help="slot-attention iterations in training")
    p.add_argument("--num-slots", type=int, default=None)
    p.add_argument("--vocab-size", type=int, default=None, help="slate: dVAE vocabulary (default: the config's)")
    p.add_argument("--stage", default=None, choices=["joint", "dvae", "slots"],
                   help="slate: joint = everything at once (default); dvae = the dVAE alone; slots = slot attention "
                   "and the decoder on the frozen tokens of --dvae RUN_DIR (recipe: docs/slate.md)")
    p.add_argument("--dvae", default=None, metavar="RUN_DIR",
                   help="slate, --stage slots: the run (train --stage dvae --out RUN_DIR) whose dVAE is loaded, frozen")
    p.add_argument("--steps", type=int, default=None,
                   help="default: the config's recipe (cpu-small 10000, cpu-objects 15000; the paper configs the "
                   "authors': slot-attention 500000, slate 250000), else 1000")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the config's recipe (cpu-*: 16; paper-*: slot-attention 64, slate 50), else 32")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr", type=float, default=None,
                   help="default: cpu-small/cpu-objects 6e-4; else 4e-4 (slot-attention), 1e-4 (slate, non-dVAE)")
    p.add_argument("--dvae-lr", type=float, default=None, help="slate: the dVAE's learning rate (default 3e-4)")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="default: cpu-small/cpu-objects 200; paper-*: 10000 (slot-attention), 30000 (slate); "
                   "else min(10000, steps/10) (slate: min(30000, steps/10)); 0 = off")
    p.add_argument("--decay-steps", type=int, default=None,
                   help="lr halves every N steps; default: cpu-small/cpu-objects off; else 100000 (slate: off); "
                   "0 = off")
    p.add_argument("--grad-clip", type=_optional_float, default=None,
                   help="clip the gradient norm; off/0 = off (default: off for slot-attention, 1.0 for slate)")
    p.add_argument("--grad-clip-type", default=None, choices=["l2", "inf"],
                   help="norm clipped: l2 (slot-attention default) or inf (slate default, as SLATE's code)")
    p.add_argument("--tau-start", type=float, default=None,
                   help=f"slate: Gumbel-softmax temperature at step 0 (default {d.tau_start})")
    p.add_argument("--tau-final", type=float, default=None,
                   help=f"slate: temperature after the annealing (default {d.tau_final})")
    p.add_argument("--tau-steps", type=int, default=None,
                   help="slate: cosine annealing length (default min(30000, steps/2)); 0 = constant --tau-start")
    p.add_argument("--lr-plateau-patience", type=int, default=None, metavar="N",
                   help="halve every learning rate after N evaluations in a row without a lower validation loss "
                   "(slate paper-64/96 recipe: 4, SLATE's rule); default off; 0 = off")
    p.add_argument("--eval-every", type=int, default=None, help="default: cpu-*: 500; paper-*: 5000; else 200")
    p.add_argument("--eval-batches", type=int, default=None, help="default: cpu-* and paper-*: 8; else 4")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--out", default=d.out)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--on-nonfinite", default="stop", choices=["stop", "skip"],
                   help="a NaN/Inf loss or gradient stops training (default) or skips that update")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"],
                   help="auto = cuda when available (under torchrun: GPU LOCAL_RANK); a run may resume on another")
    p.add_argument("--precision", default=d.precision, choices=["fp32", "bf16"],
                   help="bf16: training forward under torch.autocast with bfloat16 (weights and solvers stay fp32)")


def _run_train(args: argparse.Namespace) -> int:
    from .training.config import TrainConfig
    from .training.loop import TrainingInterrupted, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["progress"] = not args.no_progress
    for name in ("tau_start", "tau_final"):  # SLATE-only flags with concrete defaults: refuse them elsewhere
        if values[name] is None:
            del values[name]
        elif args.model != "slate":
            raise ValueError(f"--{name.replace('_', '-')} is a SLATE setting; use it with --model slate")
    from .training.distributed import env_rank

    main_rank = env_rank() == 0  # under torchrun every rank returns the same summary: print it once
    try:
        summary = train(TrainConfig(**values))
    except TrainingInterrupted as stop:
        if main_rank:
            print(f"deqslots train: {stop}", file=sys.stderr)
        return 128 + stop.signum  # the shell convention for "ended by signal N"
    if main_rank:
        print(strict_json(summary, indent=2))
    return 0


def _composition_pairs(args: argparse.Namespace, kind, model, data: str) -> int:
    """--composition, or its default: 16 scene pairs for a model whose kind composes now (SLATE past its dVAE
    stage) and that was trained on ``shapes``, none otherwise.

    The pairs and their true composites come from the ``shapes`` generator (the one that can edit a scene), so
    for a model of other data they would measure it out of distribution: refused when asked for explicitly.
    """
    trained_on = data.split("@", 1)[0]
    if args.composition is not None:
        if args.composition and trained_on != "shapes":
            raise ValueError(f"--composition measures slot swaps on generated `shapes` scene pairs (the generator that "
                             f"can edit a scene); this model was trained on {data!r}, so they would be out of its "
                             "distribution: drop --composition (or --composition 0)")
        return args.composition
    return 16 if kind.composes_now(model) and trained_on == "shapes" else 0


def _run_eval_pretrained(args: argparse.Namespace) -> int:
    import tempfile

    from .data.batches import BatchStream
    from .evaluation.colour_control import colour_control
    from .training.registry import kind_of
    from .pretrained import FIXED_TEST_BATCH, PRETRAINED, evaluate_pretrained, load_pretrained

    if args.run is not None:
        raise ValueError("give either a run folder or --pretrained NAME, not both")
    if args.fid_weights:
        raise ValueError("--fid-weights applies to run folders, not to --pretrained models")
    batches = FIXED_TEST_BATCH["batches"] if args.batches is None else args.batches
    # loaded once for the metrics and the figures
    model = load_pretrained(args.pretrained, num_slots=args.num_slots)
    entry, kind, seed = PRETRAINED[args.pretrained], kind_of(model), FIXED_TEST_BATCH["seed"]
    if args.composition and not kind.composes_now(model):
        raise ValueError(f"--composition applies to models that generate from their slots; {entry.name} is a "
                         f"{kind.title} model, which does not (drop --composition)")
    data = args.data or entry.data
    result = evaluate_pretrained(args.pretrained, split=args.split, batches=batches, model=model, data=data,
                                 iters=args.iters)
    # the colour-only control on the same test images evaluate_pretrained scored
    images = BatchStream(data, args.split, model.config.resolution, FIXED_TEST_BATCH["batch_size"], seed)
    result.update(colour_control(images, batches, seed, result["fg_ari"]))
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    pairs = _composition_pairs(args, kind, model, data)
    if pairs:  # SLATE: generate from A's slots with one swapped for B's object's, against the true composite
        with tempfile.TemporaryDirectory() as scratch:  # composition.png goes to --out, or nowhere
            result.update(kind.composition(model, pairs, out or Path(scratch), seed), composition_pairs=pairs)
    tag = _eval_tag(args)  # another setup than the documented one: its own files, no documented figures
    documented = {} if tag else dict(documented_fg_ari=entry.fg_ari, documented_mse=entry.mse)
    result.update(pretrained=entry.name, model=entry.model, variant=entry.variant, data=data, split=args.split,
                  batches=batches, images=batches * FIXED_TEST_BATCH["batch_size"], **documented,
                  num_slots=getattr(model.config, "num_slots", None), trained_steps=entry.steps, command=entry.command)
    if args.iters is not None:
        result.update(iters=args.iters)
    if out is not None:  # slot attention: segmentations.png; SLATE: slots.png (+ composition.png above)
        if not args.data:  # the figure draws generated scenes of the model's own data set
            figure = out / kind.scene_figure_name
            kind.scene_figure(model, entry.data, figure.with_name(figure.stem + tag + figure.suffix),
                              split=args.split, seed=seed)
        (out / f"eval_{args.split}{tag}.json").write_text(strict_json(result, indent=2))
    print(strict_json(result, indent=2))
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    if args.iters is not None and args.iters < 1:
        raise ValueError(f"--iters takes the number of slot-attention iterations at evaluation (>= 1); "
                         f"got {args.iters}")
    if args.composition is not None and args.composition < 0:
        raise ValueError(f"--composition takes a number of scene pairs >= 0 (0 skips it); got {args.composition}")
    if args.pretrained is not None:
        return _run_eval_pretrained(args)
    if args.run is None:
        raise ValueError("name the run folder to evaluate (the --out of deqslots train) or pass --pretrained NAME")
    if args.out is not None:
        raise ValueError("--out applies to --pretrained; a run's results go into its own folder")
    if args.batches is None:
        args.batches = 10
    from .training.checkpoint import check_training_checkpoint, load_checkpoint
    from .evaluation.colour_control import colour_control
    from .evaluation.evaluate import evaluate
    from .training.registry import MODELS, model_kind
    from .training.loop import rebuild_model, write_figures
    from .data.batches import BatchStream

    run = Path(args.run)
    state = load_checkpoint(run / "checkpoint.pt")
    check_training_checkpoint(state, run / "checkpoint.pt")
    # the slot parameters do not depend on the count, so with --num-slots the weights still fit
    config, model = rebuild_model(state, run / "checkpoint.pt", num_slots=args.num_slots)
    data = args.data or config.data  # --data: the same data set elsewhere, e.g. COCO's val2017 after train2017
    try:
        stream = BatchStream(data, args.split, model.config.resolution, config.batch_size, config.seed)
    except FileNotFoundError as err:
        if args.data:
            raise
        raise FileNotFoundError(f"{err}: the run's data ({config.data}, as given to train) is not there any more; "
                                f"pass --data with its new place, e.g. --data {config.data.split(':')[0]}:NEW_PATH"
                                ) from None
    fid, kind = None, model_kind(config.model)
    if kind.fid:
        from .evaluation.fid import fid_scorer

        fid = fid_scorer(args.fid_weights, log=lambda message: print(message, file=sys.stderr))
    elif args.fid_weights:
        with_fid = [k for k in MODELS.values() if k.fid]
        raise ValueError(f"--fid-weights applies to {', '.join(k.title for k in with_fid)} runs "
                         f"({', '.join(f'train --model {k.name}' for k in with_fid)})")
    evaluated = args.batches * config.batch_size
    if stream.size is not None and stream.size < evaluated:  # the stream cycles: metrics weight repeats
        print(f"deqslots eval: the {args.split} split holds {stream.size} images, fewer than the {evaluated} "
              f"evaluated ({args.batches} batches of {config.batch_size}): images repeat; pass --batches "
              f"{max(1, stream.size // config.batch_size)} or use more data", file=sys.stderr)
    result = evaluate(model, stream, args.batches, seed=config.seed, iters=args.iters, fid=fid)
    if "fg_ari" in result:  # the colour-only control on the same images (null without masks)
        result.update(colour_control(stream, args.batches, config.seed, result["fg_ari"]))
    if kind.fid:
        result.setdefault("fid", None)  # null in the JSON: skipped for want of weights
    pairs = _composition_pairs(args, kind, model, config.data)
    if pairs:  # SLATE: generate from A's slots with one swapped for B's object's, against the true composite
        result.update(kind.composition(model, pairs, run, config.seed), composition_pairs=pairs)
    if args.data:
        result.update(data=args.data)
    result.update(split=args.split, batches=args.batches, images=evaluated,
                  distinct_images=evaluated if stream.size is None else min(evaluated, stream.size),
                  iters=args.iters or getattr(model.config, "eval_iters", None) or getattr(model.config, "iters", None),
                  step=int(state["step"]), num_slots=getattr(model.config, "num_slots", None))
    # An evaluation of another setup (other data, slot count or iterations) is written beside the run's own
    # evaluation instead of over it, and leaves the training figures (slots.png, loss_curve.png) alone.
    tag = _eval_tag(args)
    (run / f"eval_{args.split}{tag}.json").write_text(strict_json(result, indent=2))
    if not tag:
        write_figures(model, stream, run / "metrics.csv", run, config.seed)
    print(strict_json(result, indent=2))
    return 0


def _eval_tag(args: argparse.Namespace) -> str:
    """``""`` for the run's own setup; else a file-name suffix such as ``_slots10_data-same-hue@max_objects=8``."""
    parts = []
    if args.num_slots is not None:
        parts.append(f"slots{args.num_slots}")
    if args.iters is not None:
        parts.append(f"iters{args.iters}")
    if args.data:
        parts.append("data-" + re.sub(r"[^A-Za-z0-9@=,.+-]+", "_", args.data).strip("_")[:80])
    return "".join("_" + p for p in parts)


def _data_parser(commands) -> None:
    data = commands.add_parser("data", help="data tools: convert")
    tools = data.add_subparsers(dest="tool", required=True)
    conv = tools.add_parser("convert", help="write any --data form on disk (tfrecord:, coco:, shapestacks:, "
                            "clevr-mirror:, folder:, hdf5:) as an HDF5 file (image, mask) for random access")
    conv.add_argument("src", help="the data, as given to train --data, e.g. tfrecord:tetrominoes_train.tfrecords")
    conv.add_argument("dst", help="the .h5 file to write")
    conv.add_argument("--resolution", type=int, default=None,
                      help="resize to R x R (default: the reader's size; needed for folders and COCO)")
    conv.add_argument("--limit", type=int, default=None, help="stop after N images")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    conv.add_argument("--no-progress", action="store_true")


def _run_data(args: argparse.Namespace) -> int:
    from .data.convert import convert

    if args.resolution is not None and args.resolution < 1:
        raise ValueError(f"--resolution must be at least 1; got {args.resolution}")
    result = convert(args.src, args.dst, resolution=args.resolution, limit=args.limit,
                     progress=not args.no_progress, overwrite=args.overwrite)
    print(strict_json(result, indent=2))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (what is wrong, where the options are) instead of the usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``deqslots`` command's parser, with every subcommand (docs/cli.md is generated from it).

    Examples:
        >>> parser = build_parser()
        >>> parser.parse_args(["train", "--config", "cpu-objects", "--data", "same-hue"]).config
        'cpu-objects'
    """
    parser = _Parser(prog="deqslots", description="Implicit slot attention and fixed-point solvers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="the main job: a solver tour, then vanilla vs IN slot attention")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--steps", type=int, default=None, help="training steps per variant (default: fit the budget)")
    demo.add_argument("--minutes", type=float, default=6.0, help="time budget for the two training runs")
    _train_parser(commands)
    ev = commands.add_parser("eval", help="evaluate a trained run: MSE and FG-ARI (slate: through the slots, "
                             "CE, FID); writes DIR/eval_SPLIT.json")
    ev.add_argument("run", nargs="?", default=None, help="the run folder given to train --out")
    from .training.registry import model_kind
    from .pretrained import PRETRAINED

    shipped = ", ".join(f"{name} ({model_kind(entry.model).title}, {entry.data}, FG-ARI {entry.fg_ari:.2f})"
                        for name, entry in PRETRAINED.items())
    ev.add_argument("--pretrained", default=None, metavar="NAME",
                    help=f"evaluate a shipped model instead of a run (its metrics beside the colour-only control; "
                    f"SLATE: MSE through the slots, FG-ARI of the attention masks, composition): {shipped}")
    ev.add_argument("--out", default=None, help="--pretrained: also write eval_SPLIT.json and the model's figure "
                    "here (slot attention: segmentations.png; SLATE: slots.png and composition.png)")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--data", default=None, help="evaluate on this data (any --data form of train) instead of "
                    "the run's own; the split and the image size are the run's")
    ev.add_argument("--batches", type=int, default=None,
                    help="batches to evaluate (default 10 of the run's batch size; --pretrained: the 4 x 64 test "
                    "images its documented figures refer to)")
    ev.add_argument("--iters", type=int, default=None, help="slot-attention iterations at evaluation")
    ev.add_argument("--num-slots", type=int, default=None,
                    help="slots at evaluation (default: the run's); more slots for scenes with more objects, e.g. "
                    "with --data same-hue@min_objects=6,max_objects=8")
    ev.add_argument("--fid-weights", default=None, metavar="PATH",
                    help="slate: FID feature network, pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or a "
                    "torch.export / TorchScript file (no downloads); without it FID is skipped")
    ev.add_argument("--composition", type=int, default=None, metavar="PAIRS",
                    help="slate: shapes scene pairs (A, B) on which to swap the slot of one of A's objects for the "
                    "slot of one of B's, generate, and score against the true composite (MSE, FG-ARI; beside a "
                    "random swap); writes composition.png (default 16 for slate runs and shipped SLATE models of "
                    "shapes past --stage dvae, refused for other data; 0 skips)")
    _data_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``deqslots``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "data":
            return _run_data(args)
        if args.command == "train":
            return _run_train(args)
        if args.command == "eval":
            return _run_eval(args)
        from .demo import run_demo

        run_demo(Path(args.out), steps=args.steps, minutes=args.minutes)
        return 0
    except (ValueError, OSError, FloatingPointError, ImportError) as err:  # OSError: missing, not a folder, ...
        print(f"deqslots {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
