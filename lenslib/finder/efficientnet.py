"""EfficientNetV2-S (Tan & Le 2021) in plain ``torch.nn``, laid out as torchvision's ``efficientnet_v2_s``.

PAPER_SPEC C.1: the paper's lens finder is torchvision's EfficientNetV2-S with its classifier replaced by
``Sequential(Dropout(p=0.2, inplace), Linear(1280, 1))`` (20 178 769 parameters). torchvision wheels do not
always import beside the installed torch, so lenslib defines the network itself. Module nesting and hence
state-dict keys are torchvision's (``features.0.0.weight``, ``features.1.0.block.0.0.weight``, ...,
``features.4.0.block.2.fc1.weight``, ..., ``classifier.1.weight``): a checkpoint of the authors' model loads
with ``load_state_dict(strict=True)`` and gives the same outputs.

Network: ``features`` (8 entries) → ``avgpool`` (global mean) → flatten → ``classifier``.

====  ==============================================  ======  ======  ====  =======
 i    block                                           expand  stride  out   repeats
====  ==============================================  ======  ======  ====  =======
 0    3×3 conv + BN + SiLU (stem)                     --      2       24    1
 1    FusedMBConv 3×3                                 1       1       24    2
 2    FusedMBConv 3×3                                 4       2       48    4
 3    FusedMBConv 3×3                                 4       2       64    4
 4    MBConv 3×3 + squeeze-excitation                 4       2       128   6
 5    MBConv 3×3 + squeeze-excitation                 6       1       160   9
 6    MBConv 3×3 + squeeze-excitation                 6       2       256   15
 7    1×1 conv + BN + SiLU (head)                     --      1       1280  1
====  ==============================================  ======  ======  ====  =======

Only the first block of a stage strides and changes width; a block has a residual connection when its
input and output shapes agree, and then drops its residual branch per sample during training with
probability ``stochastic_depth_prob · k / 40`` (k = 0..39 the block's index over all 40 blocks).
BatchNorm eps is 1e-3. Squeeze-excitation squeezes to ``max(1, block input channels // 4)``.

Initialisation follows torchvision draw for draw: under the same ``torch.manual_seed`` the weights equal
those of ``torchvision.models.efficientnet_v2_s(weights=None)`` followed by
``model.classifier[1] = nn.Linear(1280, 1)`` (for ``in_ch = 3``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

BN_EPS = 1e-3
LAST_CHANNELS = 1280
# (kind, expand ratio, stride, input channels, output channels, repeats) per stage, features[1..6]
STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("fused", 1, 1, 24, 24, 2),
    ("fused", 4, 2, 24, 48, 4),
    ("fused", 4, 2, 48, 64, 4),
    ("mb", 4, 2, 64, 128, 6),
    ("mb", 6, 1, 128, 160, 9),
    ("mb", 6, 2, 160, 256, 15),
)
BLOCK_CHANNELS = (24, *(s[4] for s in STAGES), LAST_CHANNELS)  # output width of features[0..7]


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias, 'same' padding) → BatchNorm2d(eps 1e-3) → SiLU (left out when ``act`` is False);
    entries ``0``, ``1``, ``2`` as torchvision's ``Conv2dNormActivation``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, groups=groups,
                                             bias=False),
                                   nn.BatchNorm2d(cout, eps=BN_EPS)]
        if act:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gate x · sigmoid(fc2(SiLU(fc1(mean_hw(x))))) with 1×1 convolutions ``fc1``, ``fc2``."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class StochasticDepth(nn.Module):
    """Row-mode stochastic depth: in training, zero the whole input of a sample with probability ``p`` and
    scale the kept samples by 1/(1 − p); the identity in eval mode or when ``p`` is 0."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stochastic depth probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, mode=row"


class _Block(nn.Module):
    """``block`` (an nn.Sequential) plus a stochastic-depth residual when the shapes allow one."""

    def __init__(self, block: nn.Sequential, cin: int, cout: int, stride: int, sd_prob: float):
        super().__init__()
        self.block = block
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.stochastic_depth(y) + x if self.use_residual else y


class FusedMBConv(_Block):
    """Fused inverted residual: k×k conv to ``expand·cin`` (stride) → 1×1 projection; with expand ratio 1 a
    single k×k conv + BN + SiLU."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int, sd_prob: float, kernel: int = 3):
        mid = cin * expand
        if expand == 1:
            block = nn.Sequential(ConvBNAct(cin, cout, kernel, stride))
        else:
            block = nn.Sequential(ConvBNAct(cin, mid, kernel, stride), ConvBNAct(mid, cout, 1, act=False))
        super().__init__(block, cin, cout, stride, sd_prob)


class MBConv(_Block):
    """Inverted residual: 1×1 expansion → depthwise k×k (stride) → squeeze-excitation → 1×1 projection."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int, sd_prob: float, kernel: int = 3):
        mid = cin * expand
        layers: list[nn.Module] = [] if mid == cin else [ConvBNAct(cin, mid, 1)]
        layers += [ConvBNAct(mid, mid, kernel, stride, groups=mid), SqueezeExcitation(mid, max(1, cin // 4)),
                   ConvBNAct(mid, cout, 1, act=False)]
        super().__init__(nn.Sequential(*layers), cin, cout, stride, sd_prob)


class EfficientNetV2S(nn.Module):
    """EfficientNetV2-S with a one-logit head, state-dict compatible with torchvision (PAPER_SPEC C.1).

    Parameters
    ----------
    dropout : float
        Dropout probability before the final linear layer (``classifier.0``); 0.2 as the paper's head.
    stochastic_depth_prob : float
        Stochastic-depth probability of the last block; block k of 40 gets ``stochastic_depth_prob · k / 40``.
    in_ch : int
        Input channels of the stem convolution (3: g, r, z).

    Attributes
    ----------
    features : nn.Sequential
        The 8 feature blocks ``features[0..7]`` (output widths 24, 24, 48, 64, 128, 160, 256, 1280).
    avgpool : nn.AdaptiveAvgPool2d
        Global average pooling; its flattened output is the 1280-d penultimate embedding.
    classifier : nn.Sequential
        ``Dropout(dropout, inplace=True)`` → ``Linear(1280, 1)``.
    """

    def __init__(self, dropout: float = 0.2, stochastic_depth_prob: float = 0.2, in_ch: int = 3):
        super().__init__()
        n_blocks = sum(s[5] for s in STAGES)
        layers: list[nn.Module] = [ConvBNAct(in_ch, STAGES[0][3], 3, stride=2)]
        k = 0
        for kind, expand, stride, cin, cout, repeats in STAGES:
            block_cls = FusedMBConv if kind == "fused" else MBConv
            stage = []
            for r in range(repeats):
                sd_prob = stochastic_depth_prob * k / n_blocks
                stage.append(block_cls(cin if r == 0 else cout, cout, expand, stride if r == 0 else 1, sd_prob))
                k += 1
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNAct(STAGES[-1][4], LAST_CHANNELS, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # torchvision builds a 1000-class head here and replaces it afterwards; drawing its random numbers
        # (default init now, uniform re-init after the convolutions) keeps the weights seed-for-seed equal.
        imagenet_head = nn.Linear(LAST_CHANNELS, 1000)
        self._init_weights()
        nn.init.uniform_(imagenet_head.weight, -1.0 / math.sqrt(1000), 1.0 / math.sqrt(1000))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(LAST_CHANNELS, 1))

    def _init_weights(self) -> None:
        """torchvision's scheme: convolutions He-normal (fan out) with zero bias, BatchNorm weight 1 bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, 1280): the flattened ``avgpool`` output of ``features(x)``."""
        return self.avgpool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 1) of images (B, in_ch, H, W)."""
        return self.classifier(self.embed(x))
