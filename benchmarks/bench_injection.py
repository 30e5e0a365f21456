"""Full injections per second (3 bands, 4× oversampling, per-band PSF, Poisson noise) against lenstronomy.

The reference, run in the same process, is lenstronomy's ``ImageModel`` (SIE + SHEAR lens,
SERSIC_ELLIPSE source, 4× supersampling, Gaussian PSF) rendering one band; a lenstronomy injection
is three such images. Both render the same drawn parameters. The reference is re-timed next to
every lenslib setting (best of three short runs), so the ratio holds when the machine's speed
drifts. glibc's allocator is first told to keep freed memory (``mallopt``): by default it hands
every freed block over 128 kB back to the system, and lenstronomy, which allocates a fresh
supersampled numpy array for each step, then runs about 2× slower on page faults alone (lenslib is
unaffected); ``--default-malloc`` times it that way instead. Reported: injections/s of lenslib per
batch size and sampling mode, lenstronomy's injections/s next to it, and the ratio.

    python benchmarks/bench_injection.py [--batch-sizes 1 8 32 128] [--n 256] [--device cpu|cuda] [--compile]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lenslib.injection import InjectionEngine, InjectionPriors, draw, phi_q_to_ellipticity  # noqa: E402

NX, PIX = 101, 0.262


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
                       kwargs_numerics={"supersampling_factor": 4})
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


def lenslib_injections_per_s(p, host, batch: int, sampling: str, device: str, n: int, repeat: int = 5,
                             compiled: bool = False) -> float:
    eng = InjectionEngine(sampling=sampling, poisson=True, gain=150.0, batch_size=batch, device=device,
                          compile=compiled)
    if len(p) < n:
        raise ValueError(f"{n} injections to time but {len(p)} parameter sets drawn")
    sub = p.select(slice(0, n))
    eng.inject(host, sub if compiled else sub.select(slice(0, batch)), 1.3, 2500.0, seeds=0)  # warm-up (and compile)
    best = np.inf
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        eng.inject(host, sub, 1.3, 2500.0, seeds=0)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--n", type=int, default=256, help="injections timed per setting")
    ap.add_argument("--n-lenstronomy", type=int, default=12, help="images per lenstronomy timing run")
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
    largest = max(max(b, (args.n // b) * b) for b in args.batch_sizes)  # every timed setting gets its own draws
    p = draw(1337, np.random.default_rng(1).uniform(0.5, 3.0, max(largest, args.n_lenstronomy)), InjectionPriors())
    host = np.zeros((NX, NX, 3), np.float32)
    reference = lenstronomy_timer(p, 1.3, args.n_lenstronomy)
    rows = []
    print(f"[lenstronomy on CPU, {torch.get_num_threads()} torch threads; lenslib on {args.device}; "
          f"a lenstronomy injection = 3 images; freed memory kept: {steady}]")
    print(f"{'sampling':>16} {'batch':>6} {'inj/s':>9} {'lenstronomy inj/s':>18} {'x lenstronomy':>14}")
    modes = [("full", False), ("adaptive", False)] + ([("full", True), ("adaptive", True)] if args.compile else [])
    for sampling, compiled in modes:
        for b in args.batch_sizes:
            n = max(b, (args.n // b) * b)
            rate = lenslib_injections_per_s(p, host, b, sampling, args.device, n, compiled=compiled)
            ref_inj = reference() / 3
            name = sampling + ("+compile" if compiled else "")
            rows.append(dict(sampling=name, batch=b, injections_per_s=rate, lenstronomy_injections_per_s=ref_inj,
                             ratio=rate / ref_inj))
            print(f"{name:>16} {b:>6} {rate:>9.1f} {ref_inj:>18.1f} {rate / ref_inj:>14.1f}")
    if args.json:
        args.json.write_text(json.dumps(dict(device=args.device, freed_memory_kept=steady, lenslib=rows), indent=1))


if __name__ == "__main__":
    main()
