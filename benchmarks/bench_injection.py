"""Full injections per second (3 bands, 4× oversampling, per-band PSF, Poisson noise) against lenstronomy and caustics.

Both references run in the same process on the same drawn parameters (SIE + external shear lens,
elliptical Sérsic source, 101 × 101 pixels of 0.262″, 4× oversampling, Gaussian PSF):

- lenstronomy's ``ImageModel`` (``SIE`` + ``SHEAR``, ``SERSIC_ELLIPSE``, ``supersampling_factor=4``,
  Gaussian PSF) renders one band, one parameter set at a time; a lenstronomy injection is three such
  images (no noise). It is re-timed next to every lenslib setting (best of three short runs), so the
  ratio holds when the machine's speed drifts. glibc's allocator is first told to keep freed memory
  (``mallopt``): by default it hands every freed block over 128 kB back to the system, and lenstronomy,
  which allocates a fresh supersampled numpy array for each step, then runs about 2× slower on page
  faults alone (lenslib is unaffected); ``--default-malloc`` times it that way instead.
- caustics (optional, ``pip install -e .[bench]``; without it the benchmark says so and goes on), a
  PyTorch lensing package: a ``LensSource`` simulator (``SinglePlane`` of ``SIE`` and ``ExternalShear``,
  ``Sersic`` source, ``upsample_factor=4``, the band's Gaussian PSF image as a dynamic parameter),
  batched the way caustics is meant to be used: ``torch.vmap`` over the 3 × batch parameter sets (one
  per injection and band) of each batch. lenslib's Poisson step (same gain) is added to its images, so
  a caustics injection is the same product as a lenslib one. Timed once per batch size, best of two
  runs of ``--n-caustics`` injections.

Conventions mapped for caustics: ``Rein`` is lenstronomy's θ_E, ``q``/``phi`` are the drawn axis ratio
and major-axis angle from +x (caustics' φ range is [0, π): the source's φ is taken modulo π), shear
α = (γ1 x + γ2 y, γ2 x − γ1 y) about the origin as in lenslib; ``Re`` is the major-axis half-light radius
(lenslib's R_e, lenstronomy's ``R_sersic`` = R_e √q), ``Ie`` the surface brightness at ``Re``, i.e. the
flux over the profile's analytic total, with caustics' default b_n (Ciotti & Bertin, lenslib's default);
both grids are centred on the stamp with x along columns; caustics returns surface brightness, so its
images are multiplied by pixscale². caustics blurs on the 4× grid (its PSF image is sampled there, the
grid padded by half the PSF so nothing wraps around) and then block-averages; lenslib and lenstronomy
block-average and then blur. The agreement printed first (relative L1 over 8 configurations × 3 bands)
shows caustics equal to lenslib's ``render_arc`` without PSF and with the PSF applied on the 4× grid
(404 px of 0.0655″, block-summed), and how far the engine's native-resolution blur is from that.

Reported: injections/s of lenslib per batch size and sampling mode, lenstronomy's and caustics'
injections/s next to it, and the ratios; then each code at its best batch size (on a CPU caustics is
fastest at small batches: its vmapped temporaries grow with the batch to ~20 MB per parameter set).

    python benchmarks/bench_injection.py [--batch-sizes 1 8 32 128] [--n 256] [--n-caustics 32] [--no-caustics]
                                         [--device cpu|cuda] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenslib.injection import (  # noqa: E402
    InjectionEngine,
    InjectionPriors,
    add_poisson_noise_batch,
    draw,
    phi_q_to_ellipticity,
    render_arc,
    sersic_bn,
    sersic_total_flux_factor,
)
from lenslib.injection.photometry import FWHM_TO_SIGMA  # noqa: E402
from lenslib.survey import BAND_PSF_FACTORS  # noqa: E402

NX, PIX, OVERSAMPLE = 101, 0.262, 4
PSF_FWHM_R, GAIN = 1.3, 150.0
CAUSTICS_PSF_SIGMAS = 5.0  # half-width of caustics' PSF image, in σ of the widest band's PSF
N_AGREEMENT = 8  # configurations whose caustics and lenslib images are compared


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (M_MMAP_THRESHOLD 32 MB, M_TRIM_THRESHOLD 256 MB)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(-3, 32 << 20)) and bool(libc.mallopt(-1, 256 << 20))


def lenstronomy_timer(p, fwhm: float, n: int):
    """A function timing lenstronomy on the first ``n`` parameter sets: best of ``repeat`` runs, images/s."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    data = ImageData(image_data=np.zeros((NX, NX)), ra_at_xy_0=-(NX - 1) / 2 * PIX, dec_at_xy_0=-(NX - 1) / 2 * PIX,
                     transform_pix2angle=np.eye(2) * PIX)
    model = ImageModel(data, PSF(psf_type="GAUSSIAN", fwhm=fwhm, pixel_size=PIX),
                       lens_model_class=LensModel(["SIE", "SHEAR"]), source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics={"supersampling_factor": OVERSAMPLE})
    e1, e2 = phi_q_to_ellipticity(p.phi_lens, p.q_lens)
    es1, es2 = phi_q_to_ellipticity(p.phi_source, p.q_source)
    kw = [([dict(theta_E=p.theta_e[k], e1=e1[k], e2=e2[k], center_x=p.lens_x[k], center_y=p.lens_y[k]),
            dict(gamma1=p.shear_g1[k], gamma2=p.shear_g2[k], ra_0=0, dec_0=0)],
           [dict(amp=1.0, R_sersic=p.re_arcsec[k] * np.sqrt(p.q_source[k]), n_sersic=p.n_sersic[k], e1=es1[k],
                 e2=es2[k], center_x=p.beta_x[k], center_y=p.beta_y[k])]) for k in range(n)]
    model.image(*kw[0])  # warm-up

    def images_per_s(repeat: int = 3) -> float:
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            for lens, src in kw:
                model.image(lens, src)
            best = min(best, time.perf_counter() - t0)
        return n / best

    return images_per_s


def caustics_simulator(psf_fwhm_r: float):
    """caustics' simulator of one band (SIE + shear, Sérsic, 4× upsampling, a PSF image on the 4× grid large
    enough for the widest band) and its lens, shear and source modules; None (said) when caustics does not import."""
    try:
        import caustics
    except ImportError as exc:
        print(f"[caustics is not importable ({exc}); pip install -e .[bench] to compare with it]")
        return None
    sigma_fine = max(BAND_PSF_FACTORS) * psf_fwhm_r * FWHM_TO_SIGMA * OVERSAMPLE / PIX
    size = 2 * math.ceil(CAUSTICS_PSF_SIGMAS * sigma_fine) + 1
    cosmo = caustics.FlatLambdaCDM(name="cosmology")  # unused with Rein given in arcsec
    sie = caustics.SIE(cosmology=cosmo, name="sie")
    shear = caustics.ExternalShear(cosmology=cosmo, name="shear", x0=0.0, y0=0.0)
    lens = caustics.SinglePlane(cosmology=cosmo, lenses=[sie, shear], name="lens", z_l=0.5, z_s=1.0)
    source = caustics.Sersic(name="source")
    sim = caustics.LensSource(lens=lens, source=source, pixelscale=PIX, pixels_x=NX, upsample_factor=OVERSAMPLE,
                              psf=torch.zeros(size, size), name="sim")
    sim.psf.to_dynamic()
    return dict(sim=sim, sie=sie, shear=shear, source=source, psf_size=size, version=caustics.__version__)


def caustics_params(cx: dict, p, psf_fwhm_r: float) -> list[torch.Tensor]:
    """The 3N parameter sets of N injections (row 3k + j: injection k, band j), in the simulator's order."""
    from caustics.utils import gaussian

    rep = lambda a: torch.as_tensor(np.repeat(np.asarray(a, dtype=float), 3), dtype=torch.float32)  # noqa: E731
    size, fine = cx["psf_size"], PIX / OVERSAMPLE
    kernels = torch.stack([gaussian(fine, size, size, f * psf_fwhm_r * FWHM_TO_SIGMA) for f in BAND_PSF_FACTORS])
    total = sersic_total_flux_factor(p.n_sersic, p.re_arcsec * np.sqrt(p.q_source), sersic_bn(p.n_sersic))
    ie = p.fluxes_nmgy() / total[:, None]  # surface brightness at R_e, per band
    sie, shear, src = cx["sie"], cx["shear"], cx["source"]
    values = {cx["sim"].psf: kernels.repeat(len(p), 1, 1),
              sie.x0: rep(p.lens_x), sie.y0: rep(p.lens_y), sie.q: rep(p.q_lens), sie.phi: rep(p.phi_lens),
              sie.Rein: rep(p.theta_e), shear.gamma_1: rep(p.shear_g1), shear.gamma_2: rep(p.shear_g2),
              src.x0: rep(p.beta_x), src.y0: rep(p.beta_y), src.q: rep(p.q_source),
              src.phi: rep(np.mod(p.phi_source, np.pi)), src.n: rep(p.n_sersic), src.Re: rep(p.re_arcsec),
              src.Ie: torch.as_tensor(ie.reshape(-1), dtype=torch.float32)}
    return [values[v] for v in cx["sim"].dynamic_params]


def caustics_images(cx: dict, params: list[torch.Tensor], psf: bool = True) -> torch.Tensor:
    """(N, 3, NX, NX) images in flux per pixel: one ``torch.vmap`` of the simulator over the parameter sets."""
    sim = cx["sim"]
    with torch.no_grad():
        sb = torch.vmap(lambda x: sim(x, psf_convolve=psf))(params)
    return (sb * PIX**2).reshape(-1, 3, NX, NX)


def relative_l1(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Σ|a − ref| / Σ|ref| per image."""
    return (a.double() - ref.double()).abs().sum((-2, -1)) / ref.double().abs().sum((-2, -1))


def lenslib_arcs(p, psf_fwhm: np.ndarray | None, fine: bool = False) -> torch.Tensor:
    """(N, 3, NX, NX) lenslib arcs from ``render_arc``; ``fine``: rendered and blurred on the 4× grid, block-summed."""
    col = lambda a: np.asarray(a, dtype=float)[:, None]  # noqa: E731
    e1, e2 = phi_q_to_ellipticity(p.phi_lens, p.q_lens)
    es1, es2 = phi_q_to_ellipticity(p.phi_source, p.q_source)
    grid = dict(nx=NX * OVERSAMPLE, pixscale=PIX / OVERSAMPLE, oversample=1) if fine else {}
    img = render_arc(theta_E=col(p.theta_e), e1=col(e1), e2=col(e2), gamma1=col(p.shear_g1), gamma2=col(p.shear_g2),
                     center_x=col(p.lens_x), center_y=col(p.lens_y), R_sersic=col(p.re_arcsec * np.sqrt(p.q_source)),
                     n_sersic=col(p.n_sersic), e1_source=col(es1), e2_source=col(es2), source_x=col(p.beta_x),
                     source_y=col(p.beta_y), flux=p.fluxes_nmgy(), psf_fwhm=psf_fwhm, **grid)
    if fine:
        img = img.reshape(len(p), 3, NX, OVERSAMPLE, NX, OVERSAMPLE).sum((3, 5))
    return img


def caustics_agreement(cx: dict, p, psf_fwhm_r: float) -> dict[str, float]:
    """Largest relative L1 between caustics' and lenslib's images of the first configurations, 3 bands each:
    without PSF, with the PSF on the 4× grid (both codes' fine samples blurred alike), and against the engine's
    noise-free arcs (blurred after block averaging)."""
    sub = p.select(slice(0, N_AGREEMENT))
    params = caustics_params(cx, sub, psf_fwhm_r)
    fwhm = np.tile(psf_fwhm_r * np.asarray(BAND_PSF_FACTORS), (len(sub), 1))
    blurred = caustics_images(cx, params)
    engine = InjectionEngine(sampling="full", device="cpu").arcs(sub, psf_fwhm_r)[0]
    return dict(no_psf=relative_l1(caustics_images(cx, params, psf=False), lenslib_arcs(sub, None)).max().item(),
                psf_4x_grid=relative_l1(blurred, lenslib_arcs(sub, fwhm, fine=True)).max().item(),
                engine_arcs=relative_l1(blurred, engine).max().item())


def caustics_injections_per_s(cx: dict, p, batch: int, n: int, repeat: int = 2) -> float:
    """caustics' injections/s on the first ``n`` parameter sets in batches of ``batch`` (3 bands, PSF, Poisson)."""
    sub = p.select(slice(0, n))

    def run(q) -> None:
        for b0 in range(0, len(q), batch):
            part = q.select(slice(b0, min(b0 + batch, len(q))))
            img = caustics_images(cx, caustics_params(cx, part, PSF_FWHM_R))
            gens = [torch.Generator().manual_seed(b0 + k) for k in range(len(part))]
            add_poisson_noise_batch(img, GAIN, gens, inplace=True)

    run(sub.select(slice(0, min(batch, 2))))  # warm-up
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(sub)
        best = min(best, time.perf_counter() - t0)
    return n / best


def lenslib_injections_per_s(p, host, batch: int, sampling: str, device: str, n: int, repeat: int = 5,
                             compiled: bool = False) -> float:
    eng = InjectionEngine(sampling=sampling, poisson=True, gain=GAIN, batch_size=batch, device=device,
                          compile=compiled)
    if len(p) < n:
        raise ValueError(f"{n} injections to time but {len(p)} parameter sets drawn")
    sub = p.select(slice(0, n))
    eng.inject(host, sub if compiled else sub.select(slice(0, batch)), PSF_FWHM_R, 2500.0, seeds=0)  # warm-up
    best = np.inf
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        eng.inject(host, sub, PSF_FWHM_R, 2500.0, seeds=0)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return n / best


def print_agreement(agree: dict[str, float]) -> None:
    same = max(agree["no_psf"], agree["psf_4x_grid"]) < 1e-3
    flag = "" if same else "  ** DIFFERENT IMAGES: the timings do not compare like with like **"
    print(f"[caustics vs lenslib, relative L1, worst of {N_AGREEMENT} configurations x 3 bands: "
          f"no PSF {agree['no_psf']:.1e}; PSF on the 4x grid {agree['psf_4x_grid']:.1e}; "
          f"vs the engine's arcs (PSF after block averaging, as lenstronomy) {agree['engine_arcs']:.1e}]{flag}")


def print_best(rows: list[dict], caustics_rate: dict[int, float]) -> None:
    """Each code at its own best batch size (caustics' vmap slows down as the batch grows on a CPU)."""
    b = max(caustics_rate, key=caustics_rate.get)
    best = {}
    for r in rows:
        if r["injections_per_s"] > best.get(r["sampling"], {}).get("injections_per_s", 0):
            best[r["sampling"]] = r
    print(f"[best against best: caustics {caustics_rate[b]:.1f} inj/s at batch {b}; "
          + "; ".join(f"lenslib {k} {r['injections_per_s']:.1f} inj/s at batch {r['batch']} = "
                      f"{r['injections_per_s'] / caustics_rate[b]:.1f}x" for k, r in best.items()) + "]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--n", type=int, default=256, help="injections timed per setting")
    ap.add_argument("--n-lenstronomy", type=int, default=12, help="images per lenstronomy timing run")
    ap.add_argument("--n-caustics", type=int, default=32,
                    help="injections per caustics timing run (at least one batch)")
    ap.add_argument("--no-caustics", action="store_true", help="leave caustics out")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--compile", action="store_true", help="also time engines with compile=True (torch.compile)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's allocator as it is (lenstronomy ~2x slower on page faults)")
    args = ap.parse_args()
    steady = False if args.default_malloc else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    per_setting = lambda b, total: max(b, (total // b) * b)  # noqa: E731
    largest = max(max(per_setting(b, args.n), per_setting(b, args.n_caustics)) for b in args.batch_sizes)
    p = draw(1337, np.random.default_rng(1).uniform(0.5, 3.0, max(largest, args.n_lenstronomy, N_AGREEMENT)),
             InjectionPriors())
    host = np.zeros((NX, NX, 3), np.float32)
    reference = lenstronomy_timer(p, PSF_FWHM_R, args.n_lenstronomy)
    cx = None if args.no_caustics else caustics_simulator(PSF_FWHM_R)
    agree = None
    if cx is not None:
        agree = caustics_agreement(cx, p, PSF_FWHM_R)
        print_agreement(agree)
    print(f"[lenstronomy on CPU, {torch.get_num_threads()} torch threads; lenslib on {args.device}; "
          f"caustics {cx['version'] + ' on CPU' if cx else 'not timed'}; a lenstronomy injection = 3 images; "
          f"freed memory kept: {steady}]")
    print(f"{'sampling':>16} {'batch':>6} {'inj/s':>9} {'lenstronomy inj/s':>18} {'x lenstronomy':>14}"
          + (f" {'caustics inj/s':>15} {'x caustics':>11}" if cx else ""))
    rows, caustics_rate = [], {}
    modes = [("full", False), ("adaptive", False)] + ([("full", True), ("adaptive", True)] if args.compile else [])
    for sampling, compiled in modes:
        for b in args.batch_sizes:
            rate = lenslib_injections_per_s(p, host, b, sampling, args.device, per_setting(b, args.n),
                                            compiled=compiled)
            ref_inj = reference() / 3
            if cx is not None and b not in caustics_rate:
                caustics_rate[b] = caustics_injections_per_s(cx, p, b, per_setting(b, args.n_caustics))
            name = sampling + ("+compile" if compiled else "")
            row = dict(sampling=name, batch=b, injections_per_s=rate, lenstronomy_injections_per_s=ref_inj,
                       ratio=rate / ref_inj)
            line = f"{name:>16} {b:>6} {rate:>9.1f} {ref_inj:>18.1f} {rate / ref_inj:>14.1f}"
            if cx is not None:
                row.update(caustics_injections_per_s=caustics_rate[b], ratio_caustics=rate / caustics_rate[b])
                line += f" {caustics_rate[b]:>15.1f} {rate / caustics_rate[b]:>11.1f}"
            rows.append(row)
            print(line)
    if caustics_rate:
        print_best(rows, caustics_rate)
    if args.json:
        args.json.write_text(json.dumps(dict(device=args.device, freed_memory_kept=steady, lenslib=rows,
                                             caustics_agreement_rel_l1=agree), indent=1))


if __name__ == "__main__":
    main()
