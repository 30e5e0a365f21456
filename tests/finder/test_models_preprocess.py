"""raw_robust against a direct numpy reading of the spec; the bottlenecked ResNet's size and key layout."""


import numpy as np
import pytest
import torch

from lenslib.data.cutouts import load_cutout
from lenslib.finder.models import (
    BottleneckedResNet,
    ModelError,
    build_model,
    load_weights,
    n_parameters,
    torchvision_available,
)
from lenslib.finder.preprocess import PreprocessError, PreprocessSpec, annulus_mask, raw_robust


def _reference(img: np.ndarray, r_in=20, r_out=32, clip=10.0) -> np.ndarray:
    out = np.empty_like(img, dtype=np.float32)
    yy, xx = np.mgrid[:img.shape[1], :img.shape[2]]
    r = np.sqrt((xx - img.shape[2] // 2) ** 2 + (yy - img.shape[1] // 2) ** 2)
    ring = (r >= r_in) & (r < r_out)
    for b in range(3):
        x = np.nan_to_num(img[b].astype(np.float32), nan=0.0)
        med = np.nanmedian(x[ring])
        mad = np.nanmedian(np.abs(x[ring] - med)) + 1e-8
        out[b] = np.clip(np.nan_to_num((x - med) / mad), -clip, clip)
    return out


def test_raw_robust_matches_the_spec_on_a_real_cutout(shared):
    img = load_cutout(shared("dr10_samples", "sample_cutout.npz")).image.copy()
    img[0, 10:12, 10:12] = np.nan
    assert annulus_mask(101, 101, 20, 32).sum() == 1960
    for spec in (PreprocessSpec(), PreprocessSpec(clip_range=20), PreprocessSpec(annulus_r_in=32.5, annulus_r_out=45)):
        got = raw_robust(img, spec)
        want = _reference(img, spec.annulus_r_in, spec.annulus_r_out, spec.clip_range)
        assert got.dtype == np.float32 and np.allclose(got, want, atol=1e-5)
    batch = raw_robust(torch.as_tensor(np.stack([img, img * 2])))
    assert torch.allclose(batch[0], torch.as_tensor(raw_robust(img)), atol=1e-6)
    assert torch.allclose(batch[1], batch[0], atol=1e-4)  # scale-free
    assert float(batch.abs().max()) <= 10


def test_raw_robust_bad_inputs():
    with pytest.raises(PreprocessError, match="at least 100"):
        raw_robust(np.zeros((3, 21, 21)))
    with pytest.raises(PreprocessError, match="shape"):
        raw_robust(np.zeros((101, 101)))
    with pytest.raises(PreprocessError, match="r_in < r_out"):
        PreprocessSpec(annulus_r_in=32, annulus_r_out=20)
    with pytest.raises(PreprocessError, match="mode"):
        PreprocessSpec(mode="per_image_zscore")


def test_bottlenecked_resnet_parameter_count_and_key_layout():
    m = build_model("bottlenecked_resnet", base_ch=27)
    assert n_parameters(m) == 195_589
    blocks = {"stem": m.stem, "layer1": m.layer1, "layer2": m.layer2, "layer3": m.layer3, "layer4": m.layer4,
              "fc": m.fc}
    assert [n_parameters(b) for b in blocks.values()] == [2079, 10530, 17307, 68148, 97308, 217]
    keys = set(m.state_dict())
    assert {"stem.0.weight", "stem.1.running_mean", "layer1.conv1.weight", "layer4.bn3.bias",
            "layer1.shortcut.0.weight", "layer4.shortcut.1.weight", "fc.weight", "fc.bias"} <= keys
    out = m.eval()(torch.zeros(2, 3, 101, 101))
    assert out.shape == (2, 1) and m.embed(torch.zeros(1, 3, 101, 101)).shape == (1, 216)


def test_weights_file_round_trip_and_errors(tmp_path):
    a, b = BottleneckedResNet(8), BottleneckedResNet(8)
    torch.save({"model": {f"module.{k}": v for k, v in a.state_dict().items()}}, tmp_path / "best.pt")
    load_weights(b, tmp_path / "best.pt")
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    torch.save(BottleneckedResNet(4).state_dict(), tmp_path / "small.pt")
    with pytest.raises(ModelError, match="small.pt"):
        load_weights(b, tmp_path / "small.pt")
    with pytest.raises(ModelError, match="no such weights"):
        build_model("bottlenecked_resnet", weights=tmp_path / "none.pt")
    with pytest.raises(ModelError, match="unknown architecture"):
        build_model("vit_b_16")



def test_efficientnet_matches_the_spec():
    from lenslib.finder.scoring import embed, feature_blocks

    eff = build_model("efficientnet_v2_s")  # lenslib's own (torchvision's layout: tests/finder/test_efficientnet.py)
    assert n_parameters(eff) == 20_178_769  # PAPER_SPEC C.1
    sd = eff.state_dict()
    assert sd["classifier.1.weight"].shape == (1, 1280) and "features.7.1.running_var" in sd
    assert not any(k.startswith("classifier.0") for k in sd)
    assert list(feature_blocks(eff)) == [f"features_{i}" for i in range(8)]
    e = embed(eff, np.random.default_rng(0).normal(0, 0.01, (2, 3, 101, 101)).astype(np.float32))
    assert e.penultimate.shape == (2, 1280)
    assert [v.shape[1] for v in e.blocks.values()] == [24, 24, 48, 64, 128, 160, 256, 1280]
    np.testing.assert_allclose(e.blocks["features_7"], e.penultimate, rtol=1e-5, atol=1e-7)  # avgpool of features[7]


@pytest.mark.skipif(not torchvision_available(),
                    reason="torchvision is not installed (CI: no wheel matches torch 2.13.0)")
def test_resnet18_matches_the_spec():
    from lenslib.finder.scoring import embed

    r18 = build_model("resnet18")
    assert n_parameters(r18) == 11_177_025 and r18.fc.out_features == 1
    assert r18.conv1.kernel_size == (7, 7) and r18.conv1.stride == (2, 2) and r18.conv1.bias is None
    assert embed(r18, np.zeros((1, 3, 101, 101), np.float32)).penultimate.shape == (1, 512)
