"""Rendering: ray-shooting on an oversampled grid and block averaging (PSF: psf.py; shot noise: noise.py).

:func:`lensed_unit_image` is the batched core: the lensed image of a source of unit total flux.
Two sampling modes:

- ``"full"``: every pixel is the mean of its oversample² sub-pixel rays (the paper's method).
- ``"adaptive"``: rays are first shot through the corners of 2 × 2-pixel blocks. Every pixel of a
  block whose source-plane footprint (the box of its corner rays, widened by a bound on the
  curvature of the lens mapping; always for blocks next to the singular lens centre) comes where the
  source can be brighter than ``tail`` (default 10⁻⁴) × its surface brightness at R_s gets the same
  sub-pixel mean as in the full mode; elsewhere a pixel is the corner values interpolated
  log-bilinearly to its centre. About 11 % of the pixels need sub-pixel rays, since arcs cover a
  small part of the stamp; the tests hold the difference to the full mode below 0.1 % (L1), and it
  is typically ~10⁻⁵.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from lenslib.injection._tensor import tensors
from lenslib.injection.lens import ellipticity_to_phi_q, sie_lens_frame
from lenslib.injection.psf import gaussian_psf_fft
from lenslib.injection.source import sersic_bn, sersic_log_total_flux_factor
from lenslib.survey import PIXSCALE, STAMP

SAMPLING_MODES = ("full", "adaptive")
# rays traced per chunk: cache-sized pieces on the CPU; on a GPU, chunks big enough that the launch
# of each of the ~60 kernels per chunk is not what costs (temporaries of 128 MB each at 2**25 rays)
CHUNK_RAYS = {"cpu": 1 << 18, "cuda": 1 << 25}
ADAPTIVE_BLOCK = 2  # pixels per side of the blocks whose corners the adaptive mode ray-shoots first


def _chunk_rays(device: torch.device) -> int:
    return CHUNK_RAYS.get(device.type, CHUNK_RAYS["cpu"])


def pixel_grid(nx: int = STAMP, pixscale: float = PIXSCALE, oversample: int = 1, dtype=torch.float32,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) in arcsec of the (nx·oversample)² sub-pixel centres; each pixel holds its own block."""
    m = nx * oversample
    c = (torch.arange(m, dtype=dtype, device=device) - (m - 1) / 2) * (pixscale / oversample)
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


@dataclass
class SourceModel:
    """A batch of elliptical Sérsic sources (lenstronomy ``SERSIC_ELLIPSE`` convention) with optional
    circular Gaussian clumps, normalised to unit total flux. All tensors have a leading batch axis B;
    clump tensors are (B, K) (weight 0 pads unused clumps)."""

    source_x: torch.Tensor
    source_y: torch.Tensor
    R_sersic: torch.Tensor
    n_sersic: torch.Tensor
    e1: torch.Tensor
    e2: torch.Tensor
    bn_method: str = "ciotti_bertin"
    clump_x: torch.Tensor | None = None  # source-plane positions (arcsec)
    clump_y: torch.Tensor | None = None
    clump_sigma: torch.Tensor | None = None
    clump_weight: torch.Tensor | None = None  # fraction of the total flux in each clump

    def __post_init__(self) -> None:
        phi, self.q = ellipticity_to_phi_q(self.e1, self.e2)
        self.bn = sersic_bn(self.n_sersic, self.bn_method)
        smooth = 1.0 if self.clump_weight is None else 1.0 - self.clump_weight.sum(-1)
        # log of the factor turning exp(−b((R/R_s)^{1/n} − 1)) into surface brightness per unit flux
        self.log_amp = torch.log(torch.as_tensor(smooth, dtype=self.n_sersic.dtype, device=self.n_sersic.device)
                                 .clamp_min(1e-30)) - sersic_log_total_flux_factor(self.n_sersic, self.R_sersic,
                                                                                    self.bn)
        # (R/R_s)² = u² + v² with (u, v) affine in the source-plane position: the rotation into the
        # source frame and the axis scalings √q/R_s and 1/(√q R_s) folded into one map, packed with
        # the profile's constants (and the clumps') in one row per source, gathered in one go
        c, s, sq = torch.cos(phi), torch.sin(phi), torch.sqrt(self.q)
        ku, kv = sq / self.R_sersic, 1 / (sq * self.R_sersic)
        cols = [ku * c, ku * s, -ku * (c * self.source_x + s * self.source_y),
                -kv * s, kv * c, kv * (s * self.source_x - c * self.source_y),
                0.5 / self.n_sersic, -self.bn, self.log_amp + self.bn]
        if self.clump_weight is not None:
            s2 = self.clump_sigma**2
            clumps = (self.clump_x, self.clump_y, self.clump_weight / (2 * math.pi * s2), -0.5 / s2)
            cols += [v[:, k] for k in range(self.clump_weight.shape[1]) for v in clumps]
        self.coef = torch.stack(cols, dim=1)

    def index(self, idx: torch.Tensor | slice) -> SourceModel:
        """The sub-batch ``idx`` (computed fields are kept, not recomputed)."""
        return _sub_batch(self, idx)

    def surface_brightness(self, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
        """Surface brightness per arcsec² at source-plane points (B, P) (unit total flux)."""
        return sersic_brightness(self.coef, bx, by)

    def reach(self, tail: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(radius, √q): beyond the circular source-plane distance radius/√q the Sérsic part is fainter
        than ``tail`` × its value at R_s; clumps extend the radius to their offset + 6σ."""
        x_cut = 1.0 + math.log(1.0 / tail) / self.bn
        radius = self.R_sersic * x_cut**self.n_sersic
        sq = torch.sqrt(self.q)
        if self.clump_weight is not None:
            off = torch.hypot(self.clump_x - self.source_x[:, None], self.clump_y - self.source_y[:, None])
            clump_reach = torch.where(self.clump_weight > 0, off + 6 * self.clump_sigma, 0).amax(-1)
            radius = torch.maximum(radius, clump_reach * sq)
        return radius, sq


@dataclass
class LensModelBatch:
    """A batch of SIE + external shear lenses (lenstronomy ``SIE`` + ``SHEAR``), tensors of shape (B,)."""

    theta_E: torch.Tensor
    e1: torch.Tensor
    e2: torch.Tensor
    gamma1: torch.Tensor
    gamma2: torch.Tensor
    center_x: torch.Tensor
    center_y: torch.Tensor

    def __post_init__(self) -> None:
        # β = θ − α(θ) with the lens-frame deflection α′ = SIE(x′, y′), x′ = R(φ)(θ − centre) and
        # α = R(−φ)α′ + Γθ: both maps are affine, each folded into one set of coefficients, packed
        # in one row per lens
        phi, self.q = ellipticity_to_phi_q(self.e1, self.e2)
        c, s, g1, g2 = torch.cos(phi), torch.sin(phi), self.gamma1, self.gamma2
        self.coef = torch.stack([self.theta_E, self.q, c, s, -(c * self.center_x + s * self.center_y),
                                 s * self.center_x - c * self.center_y, 1 - g1, -g2, 1 + g1], dim=1)

    def index(self, idx: torch.Tensor | slice) -> LensModelBatch:
        """The sub-batch ``idx`` (computed fields are kept, not recomputed)."""
        return _sub_batch(self, idx)

    def source_position(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """β = θ − α(θ) at image-plane points (B, P) or (P,) broadcast against the batch."""
        return source_position(self.coef, x, y)


def source_position(coef: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """β = θ − α(θ) for lenses given as rows of :attr:`LensModelBatch.coef` (B, 9): the map of
    :func:`lenslib.injection.lens.deflection` with its affine steps fused into few passes."""
    theta_e, q, c, s, x0, y0, a11, a12, a22 = (coef[:, k:k + 1] for k in range(9))
    xp = torch.addcmul(x0, c, x).addcmul_(s, y)
    yp = torch.addcmul(y0, -s, x).addcmul_(c, y)
    axp, ayp = sie_lens_frame(xp, yp, theta_e, q)
    bx = torch.addcmul(a12 * y, a11, x).addcmul_(c, axp, value=-1).addcmul_(s, ayp)
    by = torch.addcmul(a22 * y, a12, x).addcmul_(s, axp, value=-1).addcmul_(c, ayp, value=-1)
    return bx, by


def sersic_brightness(coef: torch.Tensor, bx: torch.Tensor, by: torch.Tensor) -> torch.Tensor:
    """Surface brightness at source-plane points for sources given as rows of :attr:`SourceModel.coef`."""
    u0, u1, u2, v0, v1, v2, inv_2n, minus_bn, level = (coef[:, k:k + 1] for k in range(9))
    u = torch.addcmul(u2, u0, bx).addcmul_(u1, by)
    v = torch.addcmul(v2, v0, bx).addcmul_(v1, by)
    # exp(log_amp − b((R/R_s)^{1/n} − 1)) in place on one temporary; R = 0 gives log 0 = −inf → (R/R_s)^{1/n} = 0
    sb = u.square_().addcmul_(v, v).log_().mul_(inv_2n).exp_().mul_(minus_bn).add_(level).exp_()
    for k in range(9, coef.shape[1], 4):  # Gaussian clumps: x, y, weight/(2πσ²), −1/(2σ²)
        cx, cy, amp, m = (coef[:, j:j + 1] for j in range(k, k + 4))
        d2 = (bx - cx).square_().add_((by - cy).square_())
        sb.addcmul_(amp, d2.mul_(m).exp_())
    return sb


def _sub_batch(model: Any, idx: torch.Tensor | slice) -> Any:
    """A copy of a batch model holding items ``idx`` of every tensor field."""
    out = object.__new__(type(model))
    for k, v in vars(model).items():
        setattr(out, k, v[idx] if isinstance(v, torch.Tensor) else v)
    return out


def _trace(lens: LensModelBatch, src: SourceModel, x: torch.Tensor, y: torch.Tensor):
    """Source-plane positions and surface brightness of rays at image-plane points (B, P)."""
    bx, by = lens.source_position(x, y)
    return bx, by, src.surface_brightness(bx, by)


_compiled: dict[Any, Any] = {}
_compile_failed = False


def _call(fn, compiled: bool, *args):
    """``fn(*args)``, through ``torch.compile`` when ``compiled`` (one fused kernel per shape family,
    ~10–20 s to compile once per process). Falls back to eager mode, with a warning, where compiling
    is impossible (no C compiler, an unsupported platform)."""
    global _compile_failed
    if compiled and not _compile_failed:
        try:
            if fn not in _compiled:
                _compiled[fn] = torch.compile(fn, dynamic=True)
            return _compiled[fn](*args)
        except Exception as exc:  # noqa: BLE001 - inductor fails in many ways where it cannot build
            _compile_failed = True
            warnings.warn(f"torch.compile is unavailable here ({type(exc).__name__}: {str(exc)[:200]}); "
                          "rendering without it", stacklevel=3)
    return fn(*args)


def _full(lens: LensModelBatch, src: SourceModel, nx: int, pixscale: float, oversample: int,
          compiled: bool) -> torch.Tensor:
    m = nx * oversample
    x, y = pixel_grid(nx, pixscale, oversample, src.n_sersic.dtype, src.n_sersic.device)
    x, y = x.reshape(1, -1), y.reshape(1, -1)
    b_all = lens.theta_E.shape[0]
    step = max(1, _chunk_rays(x.device) // (m * m))
    out = []
    for b0 in range(0, b_all, step):
        sl = slice(b0, min(b0 + step, b_all))
        sb = _call(_trace, compiled, lens.index(sl), src.index(sl), x, y)[2]
        out.append(sb.reshape(-1, nx, oversample, nx, oversample).mean(dim=(2, 4)))
    return torch.cat(out)


def _coarse(lens: LensModelBatch, src: SourceModel, bx: torch.Tensor, by: torch.Tensor,
            xc: torch.Tensor, yc: torch.Tensor, size: float, tail: float) -> torch.Tensor:
    """From the rays through the corners of square blocks of side ``size`` arcsec (bx, by: (B, n+1, n+1);
    block centres xc, yc: (n, n)): which blocks need sub-pixel rays (B, n, n).

    A block is active when the source may be brighter than ``tail`` × its value at R_s somewhere in
    the block's source-plane footprint. The footprint lies within the box of the corners' rays
    widened by the bilinear-interpolation bound (size²/8)·(|∂²β/∂x²| + |∂²β/∂y²|); for an SIE the
    second derivatives of the deflection are of order θ_E/(q r²) at distance r from the lens centre
    (shear adds none); the sum is taken as 4θ_E/(q r_min²), r_min the block's nearest point. Blocks within
    one block size of the centre, where that bound blows up and the singular deflection folds a block onto
    a ring, are always active."""
    corners = lambda v: (v[:, :-1, :-1], v[:, 1:, :-1], v[:, :-1, 1:], v[:, 1:, 1:])  # noqa: E731
    k = corners(bx)
    x_lo = torch.minimum(torch.minimum(k[0], k[1]), torch.minimum(k[2], k[3]))
    x_hi = torch.maximum(torch.maximum(k[0], k[1]), torch.maximum(k[2], k[3]))
    k = corners(by)
    y_lo = torch.minimum(torch.minimum(k[0], k[1]), torch.minimum(k[2], k[3]))
    y_hi = torch.maximum(torch.maximum(k[0], k[1]), torch.maximum(k[2], k[3]))
    e = lambda v: v[:, None, None]  # noqa: E731
    # distance from the lens centre to the nearest point of each block
    gx = torch.clamp((xc - e(lens.center_x)).abs() - size / 2, min=0)
    gy = torch.clamp((yc - e(lens.center_y)).abs() - size / 2, min=0)
    r2 = gx * gx + gy * gy
    margin = size * size / 8 * 4 * e(lens.theta_E / lens.q) / r2.clamp_min(size * size)
    sx, sy = e(src.source_x), e(src.source_y)
    dx = torch.clamp(torch.maximum(x_lo - sx, sx - x_hi) - margin, min=0)
    dy = torch.clamp(torch.maximum(y_lo - sy, sy - y_hi) - margin, min=0)
    radius, sq = src.reach(tail)
    return (torch.sqrt(dx * dx + dy * dy) * e(sq) < e(radius)) | (r2 < size * size)


def _subpixel_mean(lens: LensModelBatch, src: SourceModel, kb: torch.Tensor, x: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
    """Mean surface brightness of the sub-pixel rays (P, S) of pixels of injections ``kb`` (P,)."""
    return sersic_brightness(src.coef[kb], *source_position(lens.coef[kb], x, y)).mean(-1)


def _adaptive(lens: LensModelBatch, src: SourceModel, nx: int, pixscale: float, oversample: int,
              tail: float, compiled: bool, block: int = ADAPTIVE_BLOCK) -> torch.Tensor:
    dtype, device = src.n_sersic.dtype, src.n_sersic.device
    b_all, nb = lens.theta_E.shape[0], -(-nx // block)
    # blocks of block × block pixels from pixel (0, 0); the last row and column may overhang the stamp
    edge = (torch.arange(nb + 1, dtype=dtype, device=device) * block - 0.5 - (nx - 1) / 2) * pixscale
    yk, xk = torch.meshgrid(edge, edge, indexing="ij")
    centre = edge[:-1] + block * pixscale / 2
    yc, xc = torch.meshgrid(centre, centre, indexing="ij")
    # two compiled pieces, not one: fused, inductor would re-trace the rays for each corner that reads them
    bx, by, sb = (v.reshape(b_all, nb + 1, nb + 1) for v in _call(_trace, compiled, lens, src, xk.reshape(1, -1),
                                                                  yk.reshape(1, -1)))
    active = _call(_coarse, compiled, lens, src, bx, by, xc, yc, block * pixscale, tail)
    # elsewhere: the corner values interpolated to the pixel centres, bilinearly in log (Sérsic wings are ~exponential)
    t = (torch.arange(nx, dtype=dtype, device=device) + 0.5) / block
    a = t.floor().long()
    weights = torch.zeros(nx, nb + 1, dtype=dtype, device=device)
    weights[torch.arange(nx), a] = 1 - (t - a)
    weights[torch.arange(nx), a + 1] = t - a
    img = torch.exp(weights @ torch.log(sb.clamp_min(1e-30)) @ weights.T)
    b, bi, bj = torch.nonzero(active, as_tuple=True)
    if b.numel():
        d = torch.arange(block, device=device)
        i = (bi[:, None, None] * block + d[None, :, None]).expand(-1, block, block).reshape(-1)
        j = (bj[:, None, None] * block + d[None, None, :]).expand(-1, block, block).reshape(-1)
        b = b.repeat_interleave(block * block)
        inside = (i < nx) & (j < nx)
        b, i, j = b[inside], i[inside], j[inside]
        off = (torch.arange(oversample, dtype=dtype, device=device) - (oversample - 1) / 2) * (pixscale / oversample)
        oy, ox = torch.meshgrid(off, off, indexing="ij")
        c = (torch.arange(nx, dtype=dtype, device=device) - (nx - 1) / 2) * pixscale
        step = max(1, _chunk_rays(device) // oversample**2)
        for k0 in range(0, b.numel(), step):
            kb, ki, kj = b[k0:k0 + step], i[k0:k0 + step], j[k0:k0 + step]
            x = c[kj][:, None] + ox.reshape(1, -1)
            y = c[ki][:, None] + oy.reshape(1, -1)
            img[kb, ki, kj] = _call(_subpixel_mean, compiled, lens, src, kb, x, y)
    return img


def lensed_unit_image(lens: LensModelBatch, source: SourceModel, *, nx: int = STAMP, pixscale: float = PIXSCALE,
                      oversample: int = 4, sampling: str = "full", tail: float = 1e-4,
                      compiled: bool = False) -> torch.Tensor:
    """(B, nx, nx) image of lensed sources of unit total flux (each pixel: flux fraction, no PSF).

    The image sums to the magnification of the part of the lensed source inside the stamp.
    ``compiled=True`` fuses the ray tracing and the Sérsic profile with ``torch.compile`` (same
    images to float32 rounding, several times faster once compiled)."""
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    if sampling == "full":
        img = _full(lens, source, nx, pixscale, oversample, compiled)
    else:
        img = _adaptive(lens, source, nx, pixscale, oversample, tail, compiled)
    return img * pixscale**2


def render_arc(*, theta_E: Any, e1: Any, e2: Any, gamma1: Any, gamma2: Any, center_x: Any, center_y: Any,
               R_sersic: Any, n_sersic: Any, e1_source: Any, e2_source: Any, source_x: Any, source_y: Any,
               flux: Any, psf_fwhm: Any = None, nx: int = STAMP, pixscale: float = PIXSCALE, oversample: int = 4,
               bn_method: str = "ciotti_bertin", sampling: str = "full") -> torch.Tensor:
    """One band of a lensed elliptical Sérsic source, in the units of ``flux`` per pixel.

    ``flux`` is the total unlensed source flux, so the image sums to magnification × flux.
    Parameters broadcast to a batch shape B; the result has shape B + (nx, nx). ``psf_fwhm`` is the
    Gaussian PSF FWHM in arcsec (None: no PSF)."""
    args = (theta_E, e1, e2, gamma1, gamma2, center_x, center_y, R_sersic, n_sersic, e1_source, e2_source,
            source_x, source_y, flux) + (() if psf_fwhm is None else (psf_fwhm,))
    p = torch.broadcast_tensors(*tensors(*args))
    batch = p[0].shape
    flat = [v.reshape(-1) for v in p]
    lens = LensModelBatch(*flat[:7])
    src = SourceModel(source_x=flat[11], source_y=flat[12], R_sersic=flat[7], n_sersic=flat[8], e1=flat[9],
                      e2=flat[10], bn_method=bn_method)
    img = lensed_unit_image(lens, src, nx=nx, pixscale=pixscale, oversample=oversample, sampling=sampling)
    img = img * flat[13][:, None, None]
    if psf_fwhm is not None:
        img = gaussian_psf_fft(img, flat[14] / pixscale)
    return img.reshape(*batch, nx, nx)
