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

    Args:
        obj: what to save (for :func:`load_checkpoint`: tensors, containers and plain Python values only).
        path: the file; missing parent folders are created, an existing file is replaced.

    Raises:
        OSError: when the folder cannot be created or written; as with any error of ``torch.save``, the
            temporary file is removed first and ``path`` keeps its old content.

    Examples:
        >>> import pathlib, tempfile, torch
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = pathlib.Path(tmp) / "run" / "checkpoint.pt"
        ...     save_atomic({"step": 3, "weights": torch.ones(2)}, path)
        ...     save_atomic({"step": 6, "weights": torch.zeros(2)}, path)  # replaces it
        ...     print(sorted(f.name for f in path.parent.iterdir()), load_checkpoint(path)["step"])
        ['checkpoint.pt'] 6
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
    """Load a checkpoint written by :func:`save_atomic` with ``weights_only=True`` (no code execution).

    Args:
        path: the checkpoint file, e.g. ``RUN/checkpoint.pt``.

    Returns:
        The saved object (for ``deqslots train``'s checkpoints a dict; see :func:`check_training_checkpoint`), its
            tensors on the CPU.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when the file cannot be read (corrupt, truncated, not a torch file, or holding objects
            ``weights_only`` refuses).

    Examples:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_atomic({"step": 3}, pathlib.Path(tmp) / "checkpoint.pt")
        ...     print(load_checkpoint(pathlib.Path(tmp) / "checkpoint.pt"))
        {'step': 3}
        >>> load_checkpoint("runs/none/checkpoint.pt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no checkpoint at runs/none/checkpoint.pt; train first (deqslots train ... --out runs/none)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (deqslots train ... --out {path.parent})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"checkpoint {path} could not be read ({type(err).__name__}: {err}); it may be "
                         "corrupt or from an incompatible version") from err


def check_training_checkpoint(state: Any, path: Union[str, Path]) -> None:
    """Refuse a file that loads but was not written by ``deqslots train`` (e.g. a bare state dict).

    Args:
        state: what :func:`load_checkpoint` returned.
        path: where it was read from (for the message).

    Raises:
        ValueError: unless ``state`` is a dict with ``model``, ``optimizer``, ``step`` and ``train_config``.

    Examples:
        >>> check_training_checkpoint({"model": {}, "optimizer": {}, "step": 6, "train_config": {}}, "ok.pt")
        >>> check_training_checkpoint({"model": {}}, "weights.pt")
        Traceback (most recent call last):
        ...
        ValueError: weights.pt is not a checkpoint written by deqslots train (it lacks optimizer, step, train_config);
            pass the folder of a run made with deqslots train --out DIR
    """
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

    Args:
        config: the architecture as built now (a config dataclass; its class's ``LEGACY`` dict names the values
            fields had before they existed).
        recorded: the checkpoint's ``model_config`` (field name -> value).

    Returns:
        ``FIELD=VALUE`` pairs joined by commas, in ``LEGACY``'s order; ``""`` when nothing differs.

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

    Args:
        model: the model to load into (in place); its ``config`` dataclass, if it has one, is compared.
        state: a checkpoint: ``model`` (the state dict) and, optionally, ``model_config`` (field -> value).
        path: where ``state`` was read from (for the messages).
        may_differ: ``model_config`` fields allowed to differ from ``model.config``.

    Raises:
        ValueError: naming the differing fields, or the missing / unexpected / mis-shaped weights.

    Examples:
        >>> import dataclasses, torch
        >>> from deqslots import SlotAutoencoder
        >>> from deqslots.slot_attention.config import config_for
        >>> _ = torch.manual_seed(0)
        >>> trained = SlotAutoencoder(config_for("cpu-small", resolution=16, num_slots=3))
        >>> state = {"model": trained.state_dict(), "model_config": dataclasses.asdict(trained.config)}
        >>> model = SlotAutoencoder(config_for("cpu-small", resolution=16, num_slots=3))
        >>> load_model_state(model, state, "run/checkpoint.pt")
        >>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
        True
        >>> more_slots = SlotAutoencoder(config_for("cpu-small", resolution=16, num_slots=4))
        >>> load_model_state(more_slots, state, "run/checkpoint.pt")
        Traceback (most recent call last):
        ...
        ValueError: checkpoint run/checkpoint.pt was saved from a different model (SlotAutoencoder differs in
            num_slots: checkpoint 3 vs model 4); load it with the model and settings that trained it
        >>> load_model_state(more_slots, state, "run/checkpoint.pt", may_differ=("num_slots",))
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
