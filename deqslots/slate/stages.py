"""SLATE in stages: the dVAE of one run as the frozen tokenizer of another (``--stage slots --dvae RUN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ..training.checkpoint import check_training_checkpoint, load_checkpoint
from .model import SLATE

__all__ = ["load_dvae", "DVAE_FIELDS"]

# The architecture fields the dVAE's weights and token grid depend on: they must agree between the runs.
DVAE_FIELDS = ("resolution", "vocab_size", "dvae_channels", "dvae_encoder_blocks")


def load_dvae(model: SLATE, run: Union[str, Path]) -> dict:
    """Copy the dVAE weights of a SLATE run (any stage that trained a dVAE) into ``model``.

    Args:
        model: the SLATE to fill; its other weights are left as they are.
        run: the run folder (the ``--out`` of ``deqslots train --model slate --stage dvae``) or its
            ``checkpoint.pt``.

    Returns:
        What the run recorded: ``{"path", "step", "stage"}``.

    Raises:
        ValueError: the path holds no checkpoint, a checkpoint of another model, or a dVAE of another
            resolution / vocabulary / width (the message names the fields and the fix).

    Examples:
        >>> import tempfile
        >>> load_dvae(SLATE(resolution=16), tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --dvae ...: no checkpoint.pt there; train the dVAE first: deqslots train --model slate ...
    """
    path = Path(run)
    path = path / "checkpoint.pt" if path.is_dir() or not path.suffix else path
    if not path.is_file():
        raise ValueError(f"--dvae {run}: no {path.name} there; train the dVAE first: deqslots train --model slate "
                         "--stage dvae --config ... --data ... --out RUN_DIR, then pass --dvae RUN_DIR")
    state = load_checkpoint(path)
    check_training_checkpoint(state, path)
    saved = state["train_config"]
    if saved.get("model") != "slate":
        raise ValueError(f"--dvae {run}: this is a {saved.get('model')!r} run; give the folder of a SLATE run "
                         "(deqslots train --model slate --stage dvae ...)")
    if saved.get("stage") == "slots":
        raise ValueError(f"--dvae {run}: this run trained slots on a frozen dVAE; give the run that trained the "
                         "dVAE (--stage dvae or joint)")
    record = {**model.config.LEGACY, **state.get("model_config", {})}  # a field it predates: the legacy value
    now = {name: getattr(model.config, name) for name in DVAE_FIELDS}
    differ = [f"{name}: dVAE run {record.get(name)!r} vs now {now[name]!r}" for name in DVAE_FIELDS
              if record.get(name, now[name]) != now[name]]
    if differ:
        raise ValueError(f"--dvae {run} holds a dVAE of another shape ({'; '.join(differ)}); train this stage "
                         "with the dVAE run's --config / --resolution / --vocab-size")
    weights = {key[len("dvae."):]: value for key, value in state["model"].items() if key.startswith("dvae.")}
    try:
        model.dvae.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"--dvae {run}: its dVAE weights do not fit this model ({str(err).splitlines()[0]})") from err
    return {"path": str(path), "step": int(state["step"]), "stage": saved.get("stage", "joint")}

