"""Atomic checkpoints: a killed run never leaves a half-written file behind."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["save_atomic", "load_checkpoint", "check_training_checkpoint", "load_model_state",
           "predated_settings"]

#: What every checkpoint written by ``deqslots train`` holds.
TRAINING_KEYS = ("model", "optimizer", "step", "train_config")


def save_atomic(obj: Any, path: Union[str, Path]) -> None:
    """Write ``obj`` with torch.save to a temporary file in the same folder, then rename it into place.

    ``os.replace`` is atomic on POSIX and Windows, so readers see the old file or the new one, never a
    partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: Union[str, Path]) -> dict:
    """Load a checkpoint written by :func:`save_atomic` with ``weights_only=True`` (no code execution)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (deqslots train ... --out {path.parent})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"checkpoint {path} could not be read ({type(err).__name__}: {err}); it may be "
                         "corrupt or from an incompatible version") from err


def check_training_checkpoint(state: Any, path: Union[str, Path]) -> None:
    """Refuse a file that loads but was not written by ``deqslots train`` (e.g. a bare state dict)."""
    missing = [key for key in TRAINING_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ValueError(f"{path} is not a checkpoint written by deqslots train (it lacks {', '.join(missing)}); "
                         "pass the folder of a run made with deqslots train --out DIR")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _predated(config: Any, recorded: dict) -> dict[str, Any]:
    """The ``LEGACY`` values of the fields of ``config``'s class that a checkpoint's ``model_config`` lacks."""
    return {key: value for key, value in getattr(type(config), "LEGACY", {}).items() if key not in recorded}


def predated_settings(config: Any, recorded: dict) -> str:
    """``--set`` text (``FIELD=VALUE,...``) that makes ``config`` the model a checkpoint was trained as: the
    fields its recorded ``model_config`` predates, at their ``LEGACY`` values where ``config`` has another (a
    model built before a field existed was trained with that value). Empty when nothing differs.

    Examples:
        >>> from deqslots.slate import slate_config_for
        >>> config = slate_config_for("cpu-slate")  # the authors' fields since issue #22
        >>> recorded = {k: v for k, v in vars(config).items() if k not in ("init", "decoder_activation")}
        >>> predated_settings(config, recorded)
        'decoder_activation=gelu,init=torch'
    """
    return ",".join(f"{key}={value}" for key, value in _predated(config, recorded).items()
                    if _plain(value) != _plain(getattr(config, key)))


def load_model_state(model: torch.nn.Module, state: dict, path: Union[str, Path],
                     may_differ: tuple[str, ...] = ()) -> None:
    """Load a checkpoint's weights into ``model``, refusing another architecture with a readable message.

    The model configuration saved with the checkpoint (``model_config``) is compared field by field with
    ``model.config`` first, so a mismatch that would load silently (a different number of slots, another
    variant) is refused too; then the weights must fit exactly. ``may_differ`` names fields a caller changes
    on purpose (``num_slots`` at evaluation: slot attention's weights do not depend on the count).

    Raises:
        ValueError: naming the differing fields, or the missing / unexpected / mis-shaped weights.
    """
    saved = state.get("model_config")
    config = getattr(model, "config", None)
    if isinstance(saved, dict) and dataclasses.is_dataclass(config):
        now = dataclasses.asdict(config)
        # A field the checkpoint predates was trained with the config class's LEGACY value where it names one
        # (SLATEConfig.LEGACY, AutoencoderConfig.LEGACY: the authors' architecture became the default later),
        # and counts as matching otherwise.
        old = predated_settings(config, saved)
        saved = {**_predated(config, saved), **saved}
        diffs = [f"{key}: checkpoint {saved[key]!r} vs model {now[key]!r}" for key in now
                 if key in saved and key not in may_differ and _plain(saved[key]) != _plain(now[key])]
        extra = sorted(set(saved) - set(now))
        if diffs or extra:
            detail = "; ".join(diffs + ([f"fields unknown to this model: {', '.join(extra)}"] if extra else []))
            hint = (f" (it predates these fields: build the model with --set {old})" if old else "")
            raise ValueError(f"checkpoint {path} was saved from a different model ({type(model).__name__} "
                             f"differs in {detail}); load it with the model and settings that trained it{hint}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        shown = "; ".join(lines[:3]) + (f"; ... ({len(lines) - 3} more)" if len(lines) > 3 else "")
        raise ValueError(f"checkpoint {path} holds weights of a different model than {type(model).__name__} "
                         f"({shown}); load it with the model and settings that trained it") from err
