"""Fréchet Inception Distance through PyTorch-Ignite's ``FID`` metric, with a pluggable feature network.

Chang et al. (2022) computed FID with PyTorch-Ignite and pytorch-fid's Inception port. Nothing is
downloaded here: the Inception weights are a file the user supplies (``--fid-weights PATH``), either
pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` state dict (loaded into
:class:`~deqslots.evaluation.inception.FIDInceptionV3`), or any network mapping images [B, 3, H, W] in [0, 1]
to features [B, F] saved by ``torch.export.save`` (with a dynamic batch dimension) or as TorchScript
(``torch.jit.save``). Without one, :func:`fid_scorer` returns None and says how to enable FID.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from .inception import load_fid_inception

__all__ = ["FIDScore", "load_feature_extractor", "fid_scorer", "FID_HOWTO"]

FID_HOWTO = ("FID skipped: no Inception weights given. To enable it pass --fid-weights PATH (Python: "
             "fid_scorer(PATH)) with pytorch-fid's pt_inception-2015-12-05-6726825d.pth state dict, or a network "
             "mapping images [B, 3, H, W] in [0, 1] to features [B, F] saved by torch.export.save or "
             "torch.jit.save; and install PyTorch-Ignite (pip install pytorch-ignite).")


def _archive_kind(path: Path) -> str:
    """"export", "torchscript" or "other": told apart by the members of the zip archive."""
    if not zipfile.is_zipfile(path):
        return "other"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.endswith("/models/model.json") for name in names):
        return "export"
    # TorchScript archives carry a code/ folder; torch.save's zip files do not.
    return "torchscript" if any("/code/" in name for name in names) else "other"


def load_feature_extractor(path: Union[str, Path]) -> nn.Module:
    """Load the FID feature network from a user-supplied file.

    Args:
        path: a pytorch-fid Inception-v3 state dict (``torch.save``; read with ``weights_only=True``,
            optionally under a ``"state_dict"`` key), an exported program (``torch.export.save``) or a
            TorchScript file (``torch.jit.save``).

    Returns:
        The network (in eval mode where the format has one).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is none of the three, or a state dict that is not pytorch-fid's Inception-v3.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import torch
        >>> from deqslots.evaluation.fid import load_feature_extractor
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "features.pt"
        ...     torch.jit.save(torch.jit.script(net), str(path))
        ...     loaded = load_feature_extractor(path)
        >>> tuple(loaded(torch.rand(2, 3, 8, 8)).shape)
        (2, 4)
        >>> inception = load_feature_extractor("pt_inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
        >>> load_feature_extractor("no-such-file.pth")
        Traceback (most recent call last):
            ...
        FileNotFoundError: no FID weights file at no-such-file.pth; FID skipped: ...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no FID weights file at {path}; {FID_HOWTO}")
    kind = _archive_kind(path)
    if kind == "export":
        return torch.export.load(str(path)).module()  # captured in the mode it was exported in
    if kind == "torchscript":
        return torch.jit.load(str(path), map_location="cpu").eval()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for foreign files
        raise ValueError(f"could not read FID weights {path} ({type(err).__name__}: {err}); {FID_HOWTO}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"FID weights {path} hold a {type(state).__name__}, not a state dict; {FID_HOWTO}")
    return load_fid_inception(state)


class FIDScore:
    """Accumulates features of real and generated images and returns their Fréchet distance.

    A thin wrapper over ``ignite.metrics.FID`` with a custom ``feature_extractor``: the feature size is
    found by running the network once on the first batch, and batches of real and generated images are
    added in pairs of equal size.

    Args:
        feature_extractor: images [B, 3, H, W] in [0, 1] -> features [B, F].
        num_features: F, if known (otherwise probed on the first update).

    Raises:
        ImportError: PyTorch-Ignite is not installed.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> fid = FIDScore(net)
        >>> images = torch.rand(32, 3, 8, 8)
        >>> fid.update(images, images)
        >>> abs(fid.compute()) < 1e-4
        True
    """

    def __init__(self, feature_extractor: nn.Module, num_features: Optional[int] = None) -> None:
        try:
            from ignite.metrics import FID
        except ImportError as err:
            raise ImportError("FID needs PyTorch-Ignite: pip install pytorch-ignite "
                              "(or pip install -e '.[fid]')") from err
        self._fid_class = FID
        if feature_extractor.training:
            try:
                feature_extractor.eval()
            except NotImplementedError:  # exported programs keep the mode they were exported in
                pass
        self.feature_extractor = feature_extractor
        self.num_features = num_features
        self._metric = None
        self.count = 0

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Add a batch of real and a batch of generated images (same number of each).

        Args:
            real: real images [B, 3, H, W] in [0, 1].
            fake: generated images [B, 3, H, W] in [0, 1], as many as ``real``.

        Raises:
            ValueError: ``real`` and ``fake`` hold different numbers of images, or (on the first update, when
                ``num_features`` is probed) the feature network does not return [batch, features].
        """
        if real.shape[0] != fake.shape[0]:
            raise ValueError(f"FID update needs as many generated as real images; got {fake.shape[0]} generated "
                             f"vs {real.shape[0]} real")
        if self._metric is None:
            if self.num_features is None:
                with torch.no_grad():
                    probe = self.feature_extractor(real[:2])
                if probe.dim() != 2:
                    raise ValueError(f"the FID feature network must return [batch, features]; got {tuple(probe.shape)}")
                self.num_features = int(probe.shape[1])
            self._metric = self._fid_class(num_features=self.num_features, feature_extractor=self.feature_extractor)
        self._metric.update((fake.detach().float(), real.detach().float()))
        self.count += real.shape[0]

    def compute(self) -> float:
        """The Fréchet distance between the two feature distributions seen so far.

        Returns:
            The FID (0 for identical feature statistics).

        Raises:
            ValueError: fewer than 2 images of each kind were added.
        """
        if self._metric is None or self.count < 2:
            raise ValueError(f"FID needs at least 2 images of each kind; got {self.count}")
        return float(self._metric.compute())


def fid_scorer(weights: Optional[Union[str, Path]], log: Callable[[str], None] = print) -> Optional[FIDScore]:
    """A :class:`FIDScore` on the network in ``weights``, or None (saying how to enable FID) without one.

    Args:
        weights: path to the feature network (see :func:`load_feature_extractor`) or None.
        log: where the "FID skipped" message goes.

    Returns:
        The scorer, or None when ``weights`` is None.

    Raises:
        FileNotFoundError: ``weights`` names no file.
        ValueError: the file is not a feature network :func:`load_feature_extractor` reads.
        ImportError: PyTorch-Ignite is not installed.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import torch
        >>> from deqslots.evaluation.fid import fid_scorer
        >>> fid_scorer(None, log=lambda message: print(message[:40]))
        FID skipped: no Inception weights given.
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.jit.save(torch.jit.script(net), str(Path(tmp) / "features.pt"))
        ...     fid = fid_scorer(Path(tmp) / "features.pt")
        >>> images = torch.rand(16, 3, 8, 8)
        >>> fid.update(images, images)
        >>> abs(fid.compute()) < 1e-4
        True
        >>> fid = fid_scorer("pt_inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
    """
    if weights is None:
        log(FID_HOWTO)
        return None
    return FIDScore(load_feature_extractor(weights))
