"""The Inception-v3 feature network of FID (the TensorFlow FID graph as ported by pytorch-fid), defined
here so a user-supplied weights file can be loaded without torchvision or downloads.

Layer names follow torchvision's Inception3 (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.
running_mean``, ...), so the state dict ``pt_inception-2015-12-05-6726825d.pth`` that pytorch-fid
publishes loads as is. The FID graph differs from torchvision's network in its pooling: average pools that
exclude padding, and a max pool in the last block's pool branch.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FIDInceptionV3", "load_fid_inception"]

_Pad = Union[int, tuple[int, int]]


class _Conv(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3, TensorFlow's) + ReLU, named ``conv`` and ``bn``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: _Pad, stride: int = 1, padding: _Pad = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool ignores padded cells; torchvision's default counts them.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_ch: int, pool_ch: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(in_ch, 64, 1)
        self.branch5x5_1 = _Conv(in_ch, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(in_ch, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(in_ch, pool_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], dim=1)


class _BlockB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(in_ch, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(in_ch, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], dim=1)


class _BlockC(nn.Module):
    """17x17 block with factorised 7x7 convolutions."""

    def __init__(self, in_ch: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(in_ch, 192, 1)
        self.branch7x7_1 = _Conv(in_ch, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(in_ch, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], dim=1)


class _BlockD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(in_ch, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(in_ch, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], dim=1)


class _BlockE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches; ``max_pool`` selects the FID graph's last-block pooling."""

    def __init__(self, in_ch: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(in_ch, 320, 1)
        self.branch3x3_1 = _Conv(in_ch, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(in_ch, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(in_ch, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(s), self.branch3x3_2b(s)], dim=1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], dim=1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], dim=1)


class FIDInceptionV3(nn.Module):
    """Images [B, 3, H, W] in [0, 1] -> the 2048 pool features FID is computed on.

    Inputs are resized bilinearly to 299x299 and scaled to [-1, 1], as pytorch-fid does. Randomly
    initialised until weights are loaded (see :func:`load_fid_inception`). The classifier ``fc`` (1008
    classes) exists only so the published state dict loads; it is not used.

    Examples:
        >>> net = FIDInceptionV3()
        >>> sum(p.numel() for p in net.parameters())  # torchvision's Inception3 without AuxLogits, 1008 classes
        23850960
    """

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The pool features of a batch.

        Args:
            images: [B, 3, H, W] in [0, 1], any size (resized to 299x299).

        Returns:
            Features [B, 2048].
        """
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) * 2.0 - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_fid_inception(state_dict: dict) -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` and load a pytorch-fid Inception state dict into it.

    Keys the file may lack (the unused classifier, BatchNorm batch counters) and the auxiliary classifier
    some exports carry are tolerated; any other mismatch means it is not that network's weights.

    Args:
        state_dict: e.g. ``torch.load("pt_inception-2015-12-05-6726825d.pth", weights_only=True)``.

    Returns:
        The network in eval mode, without gradients.

    Raises:
        ValueError: other keys are missing, or keys the network lacks are present: not that network's weights.

    Examples:
        >>> import torch
        >>> from deqslots.evaluation.inception import load_fid_inception
        >>> state = torch.load("pt_inception-2015-12-05-6726825d.pth", weights_only=True)  # doctest: +SKIP
        >>> net = load_fid_inception(state)  # doctest: +SKIP
        >>> load_fid_inception({"conv.weight": torch.zeros(1)})
        Traceback (most recent call last):
            ...
        ValueError: the weights file is not a pytorch-fid Inception-v3 state dict (missing [...
    """
    net = FIDInceptionV3()
    state = {k: v for k, v in state_dict.items() if not k.startswith("AuxLogits.")}
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (k.endswith("num_batches_tracked") or k.startswith("fc."))]
    if missing or result.unexpected_keys:
        raise ValueError(
            "the weights file is not a pytorch-fid Inception-v3 state dict "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
            f"{result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}); pass "
            "pt_inception-2015-12-05-6726825d.pth, or a feature network saved by torch.export.save / torch.jit.save"
        )
    return net.eval()
