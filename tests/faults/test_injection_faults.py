"""The injection API refuses unphysical parameters at the boundary, naming the parameter and the injection."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lenslib.injection import InjectionEngine, InjectionError, InjectionPriors, draw
from lenslib.injection.errors import InjectionParamsError
from lenslib.injection.priors import PriorsError


@pytest.fixture(scope="module")
def params():
    return draw(7, 1.5, InjectionPriors(), n=4)


@pytest.mark.parametrize("field, value, message", [
    ("theta_e", -0.5, "theta_e must be finite and >= 0 arcsec; injection 2 has -0.5"),
    ("q_lens", 1.2, "q_lens must be in (0, 1]; injection 2 has 1.2"),
    ("q_source", 0.0, "q_source must be in (0, 1]; injection 2 has 0.0"),
    ("n_sersic", 20.0, "n_sersic must be in [0.2, 10.0]; injection 2 has 20.0"),
    ("re_arcsec", 0.0, "re_arcsec must be finite and > 0 arcsec; injection 2"),
    ("r_mag", -50.0, "r_mag must be in [10.0, 35.0] mag; injection 2 has -50.0"),
    ("r_mag", np.nan, "r_mag must be in [10.0, 35.0] mag; injection 2 has nan"),
    ("beta_x", np.inf, "beta_x must be finite; injection 2 has inf"),
    ("shear_g1", 1.5, "shear_g1/shear_g2 must be a shear of modulus < 1; injection 2"),
])
def test_each_unphysical_parameter_is_named_with_its_injection(params, field, value, message):
    v = getattr(params, field).copy()
    v[2] = value
    bad = replace(params, **{field: v})
    with pytest.raises(InjectionParamsError) as exc:
        bad.validate()
    assert message in str(exc.value)
    with pytest.raises(InjectionError, match=field.split("/")[0]):  # the engine checks before it renders
        InjectionEngine(oversample=1).arcs(bad, 1.2)


def test_valid_parameters_and_an_unlensed_source_render(params):
    assert params.validate() is params
    flat = replace(params, theta_e=np.zeros(4))  # θ_E = 0: the source unlensed (the synthetic world's galaxies)
    arcs, mu = InjectionEngine(oversample=1).arcs(flat, 1.2)
    assert np.isfinite(arcs.numpy()).all() and (arcs.numpy().sum((1, 2, 3)) > 0).all() and (np.asarray(mu) > 0.5).all()


def test_engine_settings_and_batch_sizes_are_checked(params):
    with pytest.raises(InjectionError, match="pixscale must be finite and > 0"):
        InjectionEngine(pixscale=0)
    with pytest.raises(InjectionError, match="nx must be a whole number of pixels >= 1"):
        InjectionEngine(nx=0)
    with pytest.raises(InjectionError, match="no injections to render"):
        InjectionEngine(oversample=1).inject(np.zeros((3, 101, 101), np.float32), params.select(slice(0, 0)), 1.2)
    with pytest.raises(PriorsError, match="n must be a whole number of injections >= 0, got -3"):
        draw(1, 1.5, InjectionPriors(), n=-3)
    with pytest.raises(InjectionParamsError, match="r_mag has shape"):
        replace(params, r_mag=params.r_mag[:2]).validate()
