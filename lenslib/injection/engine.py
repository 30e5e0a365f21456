"""The batched injection engine: drawn parameters + real host cutouts → injected cutouts and diagnostics.

One call renders a batch: rays are shot once per injection and the three bands differ only in flux
and PSF (FWHM = host psfsize_r × (1.05, 1.00, 0.94) for g, r, z), so a full injection costs about
one band's ray-tracing. Poisson noise uses one ``torch.Generator`` per injection seeded from its
own seed, so the noise of an injection does not depend on the batch it was rendered in.

Sources are Sérsic profiles (with optional clumps), pixelated stamps (:class:`PixelatedStamps`,
see pixelated.py), or a linear blend of both (:attr:`InjectionEngine.source_mix`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from lenslib._tqdm import tqdm
from lenslib.injection.errors import InjectionError
from lenslib.injection.lens import phi_q_to_ellipticity
from lenslib.injection.noise import add_poisson_noise_batch
from lenslib.injection.photometry import arc_annulus_snr, sigma_pix
from lenslib.injection.pixelated import PixelatedSource, PixelatedStamps, lensed_pixelated_image
from lenslib.injection.priors import CLUMP_SIGMA_RE, InjectionParams
from lenslib.injection.psf import gaussian_psf_bands, gaussian_psf_fft
from lenslib.injection.render import SAMPLING_MODES, LensModelBatch, SourceModel, lensed_unit_image
from lenslib.survey import BAND_PSF_FACTORS, BANDS, PIXSCALE, STAMP, ImageShapeError, nmgy_to_mag, to_chw


def hosts_chw(hosts: Any, n: int | None = None) -> np.ndarray:
    """Host cutouts as float32 (N, 3, H, W) from (N, H, W, 3) [as stored], (N, 3, H, W), or one host (3-D)."""
    arr = hosts.detach().cpu().numpy() if isinstance(hosts, torch.Tensor) else np.asarray(hosts)
    if arr.ndim == 3:
        arr = arr[None]
    try:
        chw = to_chw(arr, "hosts", size=None, ndim=4)
    except ImageShapeError:
        raise InjectionError(f"hosts must be square g, r, z cutouts (N, H, W, 3) or (N, 3, H, W), "
                             f"got {arr.shape}") from None
    if n is not None and chw.shape[0] not in (1, n):
        raise InjectionError(f"{chw.shape[0]} hosts for {n} injections (give one host or one per injection)")
    return np.ascontiguousarray(chw, dtype=np.float32)


def _per_injection(name: str, value: Any, n: int, positive: bool = True) -> np.ndarray:
    v = np.broadcast_to(np.asarray(value, dtype=float), (n,)) if np.ndim(value) == 0 else np.asarray(value, float)
    if v.shape != (n,):
        raise InjectionError(f"{name} has shape {v.shape}; expected one value or {n}")
    bad = ~np.isfinite(v) | ((v <= 0) if positive else False)
    if positive and bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InjectionError(f"{name} must be finite and > 0; injection {k} has {v[k]!r}")
    return v


def _validated(params: InjectionParams) -> int:
    """The number of injections, after checking every physical parameter (:meth:`InjectionParams.validate`)."""
    if not isinstance(params, InjectionParams):
        raise InjectionError(f"params must be InjectionParams (lenslib.injection.draw makes them), got "
                             f"{type(params).__name__}")
    if len(params) == 0:
        raise InjectionError("no injections to render (params is empty)")
    params.validate()
    return len(params)


@dataclass
class InjectionResult:
    """Injected cutouts (host + arc) and the arc alone, both (N, 3, H, W) nanomaggies in g, r, z,
    with per-injection diagnostics as numpy arrays."""

    injected: torch.Tensor
    injection_only: torch.Tensor
    lensed_r_mag: np.ndarray  # from Σ r-band arc pixels (after noise when Poisson is on)
    magnification: np.ndarray  # arc flux inside the stamp / unlensed source flux
    arc_snr: np.ndarray  # 4–16 px annulus SNR with σ_pix from psfdepth_r (NaN without a depth)
    params: InjectionParams
    psf_fwhm_r: np.ndarray
    seeds: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.params)

    def to_frame(self) -> pd.DataFrame:
        """One row per injection: drawn parameters, fluxes, PSF, seed and diagnostics."""
        df = self.params.to_frame()
        flux = self.params.fluxes_nmgy()
        for k, b in enumerate(BANDS):
            df[f"flux_nmgy_{b}"] = flux[:, k]
        df["psf_fwhm_r"], df["seed"] = self.psf_fwhm_r, self.seeds
        df["lensed_r_mag"], df["magnification"], df["arc_snr"] = self.lensed_r_mag, self.magnification, self.arc_snr
        return df


@dataclass
class InjectionEngine:
    """Settings of the rendering; :meth:`inject` applies them to a batch.

    ``sampling="full"`` is the paper's method (oversample² rays per pixel everywhere);
    ``"adaptive"`` gives the same images to < 0.1 % (L1) several times faster (see render.py).

    ``source_mix`` m is the fraction of each arc's flux from pixelated ``sources`` (a
    :class:`PixelatedStamps` given to :meth:`inject` or :meth:`arcs`, centred on (beta_x, beta_y)):
    arcs are (1 − m)·Sérsic + m·pixelated, both lensed images carrying the injection's total fluxes.
    None: 1 when sources are given, else 0. The pixelated part has the r flux of the parameters; its
    g and z fluxes keep the stamp's own colours (3-band stamps) or take the parameters' colours
    (1-band stamps). Pixelated parts are always ray-shot at every sub-pixel (full sampling at
    ``oversample``, never ``"adaptive"`` nor compiled) and get the same per-band PSFs as the Sérsic part."""

    nx: int = STAMP
    pixscale: float = PIXSCALE
    oversample: int = 4
    sampling: str = "full"
    bn_method: str = "ciotti_bertin"
    band_psf_factors: tuple[float, float, float] = BAND_PSF_FACTORS
    poisson: bool = False
    gain: float = 150.0
    batch_size: int = 64
    device: str | torch.device | None = None
    dtype: torch.dtype = torch.float32
    compile: bool = False  # fuse ray tracing + Sérsic with torch.compile (one-off compile cost per process)
    source_mix: float | None = None  # flux fraction from pixelated sources (None: 1 with sources, else 0)

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING_MODES:
            raise InjectionError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.poisson and not self.gain > 0:
            raise InjectionError(f"gain must be > 0 e-/nmgy, got {self.gain}")
        if self.batch_size < 1 or self.oversample < 1:
            raise InjectionError("batch_size and oversample must be >= 1")
        if not (isinstance(self.nx, numbers.Integral) and self.nx >= 1):
            raise InjectionError(f"nx must be a whole number of pixels >= 1, got {self.nx!r}")
        if not (isinstance(self.pixscale, numbers.Real) and math.isfinite(self.pixscale) and self.pixscale > 0):
            raise InjectionError(f"pixscale must be finite and > 0 arcsec/pixel, got {self.pixscale!r}")
        mix = self.source_mix
        if mix is not None and not (isinstance(mix, numbers.Real) and 0 <= mix <= 1):
            raise InjectionError(f"source_mix must be a number in [0, 1] (or None), got {self.source_mix!r}")
        self.device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _mix(self, sources: PixelatedStamps | None) -> float:
        """The source mix of a run, with its sources checked."""
        if sources is not None and not isinstance(sources, PixelatedStamps):
            raise InjectionError(f"sources must be a PixelatedStamps(stamps_or_callable, pixscale), "
                                 f"got {type(sources).__name__}")
        mix = float(self.source_mix if self.source_mix is not None else sources is not None)
        if mix > 0 and sources is None:
            raise InjectionError(f"source_mix = {mix} needs pixelated sources: pass sources=PixelatedStamps(...)")
        return mix

    def _models(self, p: InjectionParams) -> tuple[LensModelBatch, SourceModel]:
        t = lambda a: torch.as_tensor(np.array(a, dtype=float), dtype=self.dtype, device=self.device)  # noqa: E731
        e1, e2 = phi_q_to_ellipticity(p.phi_lens, p.q_lens)
        lens = LensModelBatch(t(p.theta_e), t(e1), t(e2), t(p.shear_g1), t(p.shear_g2), t(p.lens_x), t(p.lens_y))
        es1, es2 = phi_q_to_ellipticity(p.phi_source, p.q_source)
        clumps: dict[str, Any] = {}
        if p.clumps.shape[1] and (p.n_clumps > 0).any():
            k = np.arange(p.clumps.shape[1])[None, :]
            used = k < p.n_clumps[:, None]
            weight = np.where(used, p.clump_frac[:, None] / np.maximum(p.n_clumps[:, None], 1), 0.0)
            clumps = dict(clump_x=t(p.beta_x[:, None] + p.clumps[..., 0]),
                          clump_y=t(p.beta_y[:, None] + p.clumps[..., 1]),
                          clump_sigma=t(np.broadcast_to(CLUMP_SIGMA_RE * p.re_arcsec[:, None], weight.shape)),
                          clump_weight=t(weight))
        # lenstronomy's product-average radius: R_sersic = R_e(major) √q
        src = SourceModel(source_x=t(p.beta_x), source_y=t(p.beta_y), R_sersic=t(p.re_arcsec * np.sqrt(p.q_source)),
                          n_sersic=t(p.n_sersic), e1=t(es1), e2=t(es2), bn_method=self.bn_method, **clumps)
        return lens, src

    def arcs(self, params: InjectionParams, psf_fwhm_r: Any, out: torch.Tensor | None = None,
             sources: PixelatedStamps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise-free arcs (N, 3, H, W) in nmgy after the per-band PSF (written into ``out`` if given),
        and the unit-flux (r-band) magnifications (N,). ``sources``: pixelated stamps of injections 0 … N−1."""
        n = _validated(params)
        fwhm_r = _per_injection("psf_fwhm_r", psf_fwhm_r, n)
        mix = self._mix(sources)
        stamps = sources.take(np.arange(n), n) if mix > 0 else None
        return self._arcs(params, fwhm_r, out, mix, stamps, sources.pixscale if mix > 0 else None)

    def _arcs(self, params: InjectionParams, fwhm_r: np.ndarray, out: torch.Tensor | None, mix: float,
              stamps: np.ndarray | None, source_pixscale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        lens, src = self._models(params)
        flux = torch.as_tensor(params.fluxes_nmgy(), dtype=self.dtype, device=self.device)
        fwhm = torch.as_tensor(fwhm_r[:, None] * np.asarray(self.band_psf_factors)[None, :], dtype=self.dtype,
                               device=self.device)
        if mix == 0:
            unit = lensed_unit_image(lens, src, nx=self.nx, pixscale=self.pixscale, oversample=self.oversample,
                                     sampling=self.sampling, compiled=self.compile)
            arcs = gaussian_psf_bands(unit, fwhm / self.pixscale, flux, out=out)
            return arcs, unit.sum((-2, -1))
        pix, mu = self._pixelated(lens, src, stamps, source_pixscale, flux, fwhm)
        if mix < 1:
            unit = lensed_unit_image(lens, src, nx=self.nx, pixscale=self.pixscale, oversample=self.oversample,
                                     sampling=self.sampling, compiled=self.compile)
            sersic = gaussian_psf_bands(unit, fwhm / self.pixscale, flux * (1 - mix))
            pix = torch.add(sersic, pix, alpha=mix, out=out)
            return pix, (1 - mix) * unit.sum((-2, -1)) + mix * mu
        return (pix if out is None else out.copy_(pix)), mu

    def _pixelated(self, lens: LensModelBatch, src: SourceModel, stamps: np.ndarray, source_pixscale: float,
                   flux: torch.Tensor, fwhm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lensed, blurred pixelated parts (B, 3, H, W) at the injections' full fluxes, and their r-band
        unit-flux magnifications (B,)."""
        b = flux.shape[0]
        image = torch.as_tensor(stamps, dtype=self.dtype, device=self.device).expand(b, -1, -1, -1)
        unit = lensed_pixelated_image(lens, PixelatedSource(image, source_pixscale, src.source_x, src.source_y),
                                      nx=self.nx, pixscale=self.pixscale, oversample=self.oversample)
        if unit.shape[1] == 1:
            return gaussian_psf_bands(unit[:, 0], fwhm / self.pixscale, flux), unit[:, 0].sum((-2, -1))
        total = image.sum((-2, -1), dtype=torch.float64)
        band_flux = (flux[:, 1:2] * (total / total[:, 1:2])).to(self.dtype)  # r from the parameters, stamp colours
        return gaussian_psf_fft(unit * band_flux[..., None, None], fwhm / self.pixscale), unit[:, 1].sum((-2, -1))

    def inject(self, hosts: Any, params: InjectionParams, psf_fwhm_r: Any, psfdepth_r: Any = None,
               seeds: int | Sequence[int] | np.ndarray | None = None, progress: bool = False,
               sources: PixelatedStamps | None = None) -> InjectionResult:
        """Render ``params`` into ``hosts`` (one per injection, or one for all) in batches of ``batch_size``.

        ``psf_fwhm_r`` (arcsec) and ``psfdepth_r`` (nmgy⁻², for the SNR) are the hosts' Tractor values.
        ``seeds`` (one int per injection, or a base int: base + index) seed the Poisson noise; required
        when Poisson noise is on. ``sources``: pixelated stamps (see the class docstring); a callable
        one is called once per batch with that batch's injection indices."""
        n = _validated(params)
        mix = self._mix(sources)
        host = hosts_chw(hosts, n)
        if host.shape[-1] != self.nx:
            raise InjectionError(f"hosts are {host.shape[-1]} px wide; the engine renders nx = {self.nx}")
        fwhm_r = _per_injection("psf_fwhm_r", psf_fwhm_r, n)
        depth = np.full(n, np.nan) if psfdepth_r is None else _per_injection("psfdepth_r", psfdepth_r, n, False)
        if seeds is None:
            if self.poisson:
                raise InjectionError("seeds are required with Poisson noise (one per injection or a base seed)")
            seed_arr = np.full(n, -1, dtype=np.int64)
        else:
            seed_arr = (int(seeds) + np.arange(n)) if np.ndim(seeds) == 0 else np.asarray(seeds, dtype=np.int64)
            if seed_arr.shape != (n,):
                raise InjectionError(f"seeds has shape {seed_arr.shape}; expected {n} or one base seed")
        shape = (n, 3, self.nx, self.nx)
        injected = torch.empty(shape, dtype=self.dtype, device=self.device)
        only = torch.empty(shape, dtype=self.dtype, device=self.device)
        magn = np.zeros(n)
        starts = range(0, n, self.batch_size)
        for b0 in tqdm(starts, desc="injecting", unit="batch", disable=not progress):
            sl = slice(b0, min(b0 + self.batch_size, n))
            stamps = sources.take(np.arange(sl.start, sl.stop), n) if mix > 0 else None
            arcs, mu = self._arcs(params.select(sl), fwhm_r[sl], only[sl], mix, stamps,
                                  sources.pixscale if mix > 0 else None)
            if self.poisson:
                gens = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seed_arr[sl]]
                add_poisson_noise_batch(arcs, self.gain, gens, inplace=True)
            h = torch.as_tensor(host[sl] if host.shape[0] > 1 else host, device=self.device, dtype=self.dtype)
            torch.add(h, arcs, out=injected[sl])
            magn[sl] = mu.double().cpu().numpy()
        snr = arc_annulus_snr(only[:, 1], sigma_pix(depth, fwhm_r, self.pixscale))
        return InjectionResult(
            injected=injected, injection_only=only,
            lensed_r_mag=nmgy_to_mag(only[:, 1].sum((-2, -1), dtype=torch.float64).cpu().numpy()),
            magnification=magn, arc_snr=snr, params=params,
            psf_fwhm_r=fwhm_r, seeds=seed_arr,
            settings=dict(sampling=self.sampling, oversample=self.oversample, bn_method=self.bn_method,
                          poisson=self.poisson, gain=self.gain if self.poisson else None, compile=self.compile,
                          band_psf_factors=list(self.band_psf_factors),
                          **(dict(source_mix=mix, source_pixscale=sources.pixscale) if mix > 0 else {})))
