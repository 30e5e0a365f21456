"""Lens-finder architectures by name, each ending in one logit (score = sigmoid(logit)).

- ``bottlenecked_resnet``: the Lanusse-style bottlenecked ResNet of PAPER_SPEC C.2 (195 589 parameters
  at base_ch = 27), state-dict keys as the authors' (``stem.0.weight``, ``layer1.conv1.weight``, ...).
- ``efficientnet_v2_s``: the paper's model (C.1), EfficientNetV2-S with head ``Dropout(0.2) → Linear(1280, 1)``
  (20 178 769 parameters), lenslib's own :class:`~lenslib.finder.efficientnet.EfficientNetV2S` in plain torch:
  torchvision's module layout and state-dict keys, so the authors' torchvision checkpoints load unchanged,
  and no torchvision needed.
- ``resnet18``: torchvision's ResNet-18 with a one-logit head (needs torchvision).

Never with downloaded weights (an optional weights file may be loaded instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lenslib import LenslibError
from lenslib.finder.efficientnet import EfficientNetV2S

ARCHITECTURES = ("bottlenecked_resnet", "resnet18", "efficientnet_v2_s")


class ModelError(LenslibError, ValueError):
    """Unknown architecture, missing torchvision, or a weights file that does not fit."""


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 convolutions with batch norm, plus a (projection) shortcut."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, mid, 1)
        self.conv2, self.bn2 = _conv_bn(mid, mid, 3, stride)
        self.conv3, self.bn3 = _conv_bn(mid, cout, 1)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(*_conv_bn(cin, cout, 1, stride)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + self.shortcut(x))


class BottleneckedResNet(nn.Module):
    def __init__(self, base_ch: int = 27, in_ch: int = 3):
        super().__init__()
        c = base_ch
        self.stem = nn.Sequential(nn.Conv2d(in_ch, c, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(inplace=True))
        self.layer1 = Bottleneck(c, c, 2 * c, 1)
        self.layer2 = Bottleneck(2 * c, c, 4 * c, 2)
        self.layer3 = Bottleneck(4 * c, 2 * c, 8 * c, 2)
        self.layer4 = Bottleneck(8 * c, 2 * c, 8 * c, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * c, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, 8·base_ch)."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


def torchvision_available() -> bool:
    """True if torchvision imports (a torchvision built for another torch fails at import)."""
    try:
        _torchvision()
    except ModelError:
        return False
    return True


def _torchvision():
    try:
        import torchvision
    except Exception:  # noqa: BLE001 - ImportError, or a RuntimeError from a torchvision built for another torch
        raise ModelError("resnet18 needs torchvision (pip install torchvision matching your torch); "
                         "bottlenecked_resnet and efficientnet_v2_s need only torch") from None
    return torchvision


def build_model(arch: str, *, base_ch: int = 27, dropout: float = 0.2, weights: str | Path | None = None) -> nn.Module:
    """A model by name; ``weights`` is an optional state-dict file (never a download). ``base_ch`` is for
    ``bottlenecked_resnet``, ``dropout`` for the ``efficientnet_v2_s`` head."""
    if arch == "bottlenecked_resnet":
        model: nn.Module = BottleneckedResNet(base_ch)
    elif arch == "resnet18":
        tv = _torchvision()
        model = tv.models.resnet18(weights=None)
        model.fc = nn.Linear(512, 1)
    elif arch == "efficientnet_v2_s":
        model = EfficientNetV2S(dropout=dropout)
    else:
        raise ModelError(f"unknown architecture {arch!r}; choose from {list(ARCHITECTURES)}")
    if weights is not None:
        load_weights(model, weights)
    return model


def read_torch_file(path: str | Path, what: str = "weights file") -> Any:
    """``torch.load`` on the CPU with ``weights_only`` (tensors, containers, numbers: no code runs);
    a missing or unreadable file raises :class:`ModelError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such {what}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on a bad file
        raise ModelError(f"{path}: not a readable torch {what} ({exc})") from None


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict (or a checkpoint dict holding ``model``/``state_dict``) into ``model``."""
    obj = read_torch_file(path)
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else obj
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ModelError(f"{path}: weights do not fit {type(model).__name__} ({first})") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"{path}: weights do not fit {type(model).__name__}: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return model


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
