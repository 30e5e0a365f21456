"""lenslib's own EfficientNetV2-S against torchvision's (PAPER_SPEC C.1), without torchvision.

The fixtures in ``data/`` were made once with torch 2.14.1 + torchvision 0.29.1 (a separate venv; the script,
``make_effnet_reference.py``, is not part of the repository): ``efficientnet_v2_s_keys.json`` is the state-dict
layout (key, shape) of ``torchvision.models.efficientnet_v2_s(weights=None)`` with ``classifier[1] =
nn.Linear(1280, 1)``; ``efficientnet_v2_s_reference.npz`` holds torchvision's outputs with lenslib's seed-0
weights loaded (``load_state_dict(strict=True)``) on the seeded input of :func:`_input`: eval-mode logits and
the spatial means of ``features[0..7]``, training-mode logits (batch-statistics BatchNorm, no dropout or
stochastic depth), and the seed-0 weights' checksum (sum of |parameter|, float64).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lenslib.finder.efficientnet import BLOCK_CHANNELS, EfficientNetV2S, StochasticDepth
from lenslib.finder.models import ModelError, build_model, n_parameters

DATA = Path(__file__).resolve().parent / "data"
# torchvision 0.29.1: sum(p.numel()) of efficientnet_v2_s(weights=None) with classifier[1] = Linear(1280, 1);
# the same as PAPER_SPEC C.1 (21 458 488 − 1 281 000 + 1 281)
TORCHVISION_N_PARAMETERS = 20_178_769
RTOL = 1e-5  # max |ours − torchvision| / max |torchvision| per array


def _input() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(0.0, 1.0, (4, 3, 101, 101)).astype(np.float32))


def _checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().abs().sum().item() for p in model.parameters()))


def _assert_close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.shape == ref.shape, what
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    assert rel <= RTOL, f"{what}: max relative difference {rel:.2e} to torchvision"


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "efficientnet_v2_s_reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def seed0():
    torch.manual_seed(0)
    return EfficientNetV2S().eval()


def test_size_and_state_dict_layout_are_torchvision_s(seed0, reference):
    assert n_parameters(seed0) == TORCHVISION_N_PARAMETERS == int(reference["n_parameters"])
    expected = [(k, tuple(shape)) for k, shape in json.loads((DATA / "efficientnet_v2_s_keys.json").read_text())]
    assert len(expected) == 782
    assert [(k, tuple(v.shape)) for k, v in seed0.state_dict().items()] == expected
    assert len(seed0.features) == 8
    assert [len(s) for s in seed0.features[1:7]] == [2, 4, 4, 6, 9, 15]


def test_seed0_outputs_equal_torchvision_s(seed0, reference):
    # the same weights as the reference run (torch's default CPU initialisation is the same across versions)
    assert _checksum(seed0) == pytest.approx(float(reference["checksum"]), rel=1e-12, abs=0)
    x = _input()
    means: list[np.ndarray] = []
    hooks = [f.register_forward_hook(lambda m, i, o: means.append(o.mean((-2, -1)).double().numpy()))
             for f in seed0.features]
    try:
        with torch.no_grad():
            logits = seed0(x).double().numpy()
    finally:
        for h in hooks:
            h.remove()
    _assert_close(logits, reference["logits"], "eval logits")
    assert [m.shape[1] for m in means] == list(BLOCK_CHANNELS) == [24, 24, 48, 64, 128, 160, 256, 1280]
    for i, m in enumerate(means):
        _assert_close(m, reference[f"features_{i}"], f"features_{i}")

    train_mode = EfficientNetV2S(dropout=0.0, stochastic_depth_prob=0.0).train()
    train_mode.load_state_dict(seed0.state_dict(), strict=True)
    with torch.no_grad():
        _assert_close(train_mode(x).double().numpy(), reference["train_logits"], "training-mode logits")
        # stochastic depth alone makes training mode random (batch-statistics BatchNorm is deterministic)
        small = x[:2, :, :40, :40]
        plain = train_mode(small)
        for m in train_mode.modules():
            if isinstance(m, StochasticDepth):
                m.p = 0.5
        torch.manual_seed(1)
        a = train_mode(small)
        torch.manual_seed(2)
        b = train_mode(small)
        assert not torch.allclose(a, b) and not torch.allclose(a, plain)
        train_mode.eval()  # no stochastic depth in eval mode: deterministic again
        torch.manual_seed(1)
        e = train_mode(small)
        assert torch.equal(e, train_mode(small)) and not torch.allclose(e, a)


def test_stochastic_depth_schedule_and_row_mode():
    torch.manual_seed(0)
    model = EfficientNetV2S(dropout=0.3, stochastic_depth_prob=0.2, in_ch=1)
    blocks = [b for stage in model.features[1:7] for b in stage]
    assert len(blocks) == 40
    np.testing.assert_allclose([b.stochastic_depth.p for b in blocks], [0.2 * k / 40 for k in range(40)], rtol=1e-12)
    # a residual wherever a block keeps its shape: every block but the first of stages 2, 3, 4, 5, 6
    assert [b.use_residual for b in blocks] == [r > 0 or s == 0 for s, n in enumerate([2, 4, 4, 6, 9, 15])
                                                for r in range(n)]
    assert model.features[0][0].weight.shape == (24, 1, 3, 3) and model.classifier[0].p == 0.3
    assert model.classifier[0].inplace and model.features[3][0].block[0][1].eps == 1e-3

    drop = StochasticDepth(0.25)
    x = torch.ones(4000, 2, 3, 3)
    torch.manual_seed(0)
    y = drop.train()(x)
    rows = y.flatten(1)
    kept = rows[:, 0] > 0
    assert torch.all(rows == rows[:, :1])  # a whole sample is kept or dropped
    assert torch.allclose(rows[kept], torch.full_like(rows[kept], 1 / 0.75))
    assert abs(1 - kept.double().mean().item() - 0.25) < 0.03
    assert drop.eval()(x) is x and StochasticDepth(0.0).train()(x) is x
    with pytest.raises(ValueError, match="probability"):
        StochasticDepth(1.5)


def test_build_model_needs_no_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now raises ImportError
    torch.manual_seed(0)
    model = build_model("efficientnet_v2_s", dropout=0.1)
    assert type(model) is EfficientNetV2S and model.classifier[0].p == 0.1
    assert model.classifier[1].weight.shape == (1, 1280)
    with pytest.raises(ModelError, match="resnet18 needs torchvision"):
        build_model("resnet18")
