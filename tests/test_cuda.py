"""GPU checks: the same work on CUDA as on the CPU. Skipped where no GPU is present (CI has none);
run them on a GPU machine with ``pytest tests/test_cuda.py``. The other test files pin the CPU for
the injection engine but train and score on the default device, so on a GPU machine the whole suite
also exercises CUDA training (AMP) and kill-and-resume there."""


import numpy as np
import pytest
import torch

from lenslib.finder.checkpoints import read_checkpoint
from lenslib.finder.config import from_mapping
from lenslib.finder.training import train
from lenslib.injection import UNRESTRICTED_BETA_FRAC, InjectionEngine, InjectionPriors, draw
from lenslib.injection.noise import add_poisson_noise_batch
from lenslib.synthetic import SurveySpec, make_survey
from tests.injection.test_engine import assert_same_noise

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")



@pytest.fixture(scope="module")
def hosts(shared):
    """The two real DR10 cutouts, (2, 3, 101, 101)."""
    out = []
    for name in ("sample_cutout.npz", "0003m005_293.npz"):
        with np.load(shared("dr10_samples", name)) as z:
            out.append(np.nan_to_num(z["cutout"].astype(np.float32).transpose(2, 0, 1)))
    return np.stack(out)


def _relative_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().sum((-2, -1)) / b.abs().sum((-2, -1))).max())


@pytest.mark.parametrize("sampling", ["full", "adaptive"])
@pytest.mark.parametrize("compiled", [False, True])
def test_injections_on_cuda_match_the_cpu(hosts, sampling, compiled):
    pri = InjectionPriors(clumps_prob=0.5).override(beta_frac_range=UNRESTRICTED_BETA_FRAC)
    p = draw(31, np.linspace(0.5, 3.0, 40), pri)
    host = hosts[np.arange(40) % len(hosts)]
    cpu = InjectionEngine(device="cpu", sampling=sampling, batch_size=16).inject(host, p, 1.3)
    gpu = InjectionEngine(device="cuda", sampling=sampling, batch_size=16, compile=compiled).inject(host, p, 1.3)
    assert gpu.injection_only.device.type == "cuda"
    assert _relative_l1(gpu.injection_only.cpu(), cpu.injection_only) < 1e-4
    np.testing.assert_allclose(gpu.lensed_r_mag, cpu.lensed_r_mag, atol=1e-4)
    np.testing.assert_allclose(gpu.magnification, cpu.magnification, rtol=1e-4)


def test_poisson_noise_on_cuda_is_seeded_and_has_variance_signal_over_gain():
    gain, level = 4.0, 2.5
    images = torch.full((3, 3, 101, 101), level, device="cuda")
    gens = lambda: [torch.Generator(device="cuda").manual_seed(s) for s in (1, 2, 3)]  # noqa: E731
    a = add_poisson_noise_batch(images, gain, gens())
    b = add_poisson_noise_batch(images, gain, gens())
    assert a.device.type == "cuda" and torch.equal(a, b)
    resid = (a - images).double()
    assert abs(float(resid.mean())) < 0.01
    assert float(resid.var()) == pytest.approx(level / gain, rel=0.03)
    # one image at a time gives the same draws as the batch
    one = add_poisson_noise_batch(images[1:2], gain, [torch.Generator(device="cuda").manual_seed(2)])
    assert torch.equal(one, a[1:2])


def test_seeded_cuda_injections_repeat_and_ignore_batching(hosts):
    p = draw(5, 1.5, InjectionPriors(), n=6)
    run = lambda b: InjectionEngine(device="cuda", poisson=True, batch_size=b).inject(hosts[0], p, 1.3,  # noqa: E731
                                                                                       seeds=40)
    x, y = run(6), run(4)
    assert_same_noise(x.injection_only, y.injection_only, gain=x.settings["gain"])
    clean = InjectionEngine(device="cuda").inject(hosts[0], p, 1.3)
    assert not torch.allclose(x.injection_only, clean.injection_only)


def test_training_on_cuda_uses_mixed_precision_and_learns(tmp_path):
    root = tmp_path / "survey"
    make_survey(root, SurveySpec(n_negatives=240, n_positives=120, seed=7, confuser_frac=0.0,
                                              source_r_mag=(19.0, 20.5)))
    doc = {"dataset": {"manifest_path": str(root / "manifests" / "synthetic.parquet"), "root": str(root),
                       "cache_in_memory": True},
           "train": {"arch": "bottlenecked_resnet", "base_ch": 8, "epochs": 5, "batch_size": 32,
                     "effective_batch": 64, "lr": 0.003, "lr_schedule": "cosine", "warmup_epochs": 1,
                     "out_dir": str(tmp_path / "run"), "device": "cuda"}}
    res = train(from_mapping(doc, "test"), progress=False, log=None)
    assert res.best_auc > 0.85, res.history
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert "scale" in ck["scaler"]  # an enabled GradScaler: float16 autocast was on
    assert next(res.model.parameters()).device.type == "cuda"
