"""§E.6 / §F.12–F.14: the gallery, the missed Tier-A table and the v14 comparison figure, in the D06 layout.

The caller scores the validation Tier-A lenses and the selected grid injections (first ≤ 10 injections
per cell with total-image r magnitude in [16, 23]); :func:`write_gallery_artefacts` turns those images
and scores into

- ``gallery/thumbs/<uid>.png``, ``gallery/gallery_data.json``, ``gallery/gallery.html`` (F.12);
- ``gallery/missed_tier_a.json``, ``gallery/missed_tier_a_table.tex`` (F.13), matched to the DESI
  candidate catalogue on the lenses' own positions (the re-implementation E.6 recommends);
- ``comparison_figure/comparison_audit_v2.json``, ``comparison_figure/fig5_comparison.png`` (F.14, G.15).

The book reads them through :class:`~lenslib.experiments.artefacts.D06Artefacts` exactly as the published
files. Figures are drawn with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), so the caller's
backend and pyplot state are left alone.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.coordinates import SkyCoord
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lenslib import LenslibError
from lenslib._util import atomic_write, utc_now, write_json
from lenslib.survey import STAMP, nmgy_to_mag

AUDIT_VERSION = "v4_large_cutouts"  # the version string of the published audit (F.14)
MATCH_RADIUS_DEG = 0.20  # catalogue cross-match radius of the missed Tier-A table (E.6), degrees
NO_FLUX_MAG = 99.0  # r_mag written when the summed r-band flux is not positive (E.6)
THUMB_INCHES = 2.0  # thumbnails are 2 × 2 in at 100 dpi (E.6)
THUMB_DPI = 100
FIGURE_WIDTH_IN = 7.0  # comparison figure width (MNRAS text width), inches
FIGURE_DPI = 150

_REAL_KEYS = ("cutout_path", "image", "score", "ra", "dec", "galaxy_id")
_INJ_KEYS = ("cutout_path", "image", "score", "theta_e", "cell_idx", "inj_idx")
_CATALOGUE_COLUMNS = ("name", "ra", "dec", "zlens", "grading")
_BRICK = re.compile(r"^(\d{4})([pm])(\d{3})(?:_|$)")


class GalleryInputError(LenslibError, ValueError):
    """An input of :func:`write_gallery_artefacts` (an item, a label, the catalogue) is missing or malformed."""


# --------------------------------------------------------------------------------------------------
# per-image quantities
# --------------------------------------------------------------------------------------------------
def total_r_mag(image: np.ndarray) -> float:
    """Total-image r-band AB magnitude, 22.5 − 2.5 log10(Σ r-band pixels) (E.6).

    Parameters
    ----------
    image : ndarray, shape (3, H, W)
        g, r, z image in nanomaggies per pixel; NaN pixels are left out of the sum.

    Returns
    -------
    float
        Magnitude (mag, full precision); 99.0 when the summed flux (nmgy) is not positive.
    """
    total = float(np.nansum(np.asarray(image, dtype=np.float64)[1]))
    if not total > 0:
        return NO_FLUX_MAG
    return float(nmgy_to_mag(total))


def display_rgb(image: np.ndarray) -> np.ndarray:
    """The gallery's colour image of a g, r, z image: E.6's linear percentile stretch.

    CHW → HWC with the channel order reversed (z → red, r → green, g → blue); lo is the 0.5th
    percentile of the positive pixel values of all three channels pooled, hi the 99.5th percentile of
    all pixel values; each value becomes (x − lo) / (hi − lo) clipped to [0, 1].

    Parameters
    ----------
    image : ndarray, shape (3, H, W)
        g, r, z image in nanomaggies per pixel (any H, W); NaN allowed.

    Returns
    -------
    ndarray, shape (H, W, 3), float64
        RGB values in [0, 1] (dimensionless), row 0 at the bottom when shown with ``origin="lower"``.
        NaN pixels are shown black (0); percentiles are taken over the finite pixels. Without any positive
        pixel lo is 0; where hi ≤ lo the image is black.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[0] != 3:
        raise GalleryInputError(f"display_rgb: image has shape {img.shape}; expected (3, H, W) with bands g, r, z")
    hwc = np.moveaxis(img, 0, -1)[..., ::-1]
    finite = hwc[np.isfinite(hwc)]
    positive = finite[finite > 0]
    lo = float(np.percentile(positive, 0.5)) if positive.size else 0.0
    hi = float(np.percentile(finite, 99.5)) if finite.size else 0.0
    if not hi > lo:
        return np.zeros(hwc.shape)
    out = np.clip((hwc - lo) / (hi - lo), 0.0, 1.0)
    return np.where(np.isfinite(out), out, 0.0)


def render_thumbnail(image: np.ndarray, path: Path) -> Path:
    """Write the PNG thumbnail of one g, r, z image (E.6 stretch, ``origin="lower"``, 2 × 2 in at 100 dpi,
    no axes; cropped to the image with a 0.02 in margin, as the published thumbnails).

    Parameters
    ----------
    image : ndarray, shape (3, H, W)
        g, r, z image in nanomaggies per pixel.
    path : Path
        Destination ``.png`` (written atomically).

    Returns
    -------
    Path
        ``path``.
    """
    fig = Figure(figsize=(THUMB_INCHES, THUMB_INCHES), dpi=THUMB_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(display_rgb(image), origin="lower")
    ax.axis("off")
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=THUMB_DPI, bbox_inches="tight", pad_inches=0.02)
    return Path(path)


def brick_position(cutout_path: str) -> tuple[float | None, float | None]:
    """Approximate (RA, Dec) in degrees parsed from a DR10 brick name at the start of the file name
    (``0147m072_123.npz`` → 14.7, −7.2: RA = first four digits / 10, sign p/m, Dec = next three / 10;
    E.6). ``(None, None)`` when the file name does not start with a brick name."""
    m = _BRICK.match(Path(str(cutout_path)).name)
    if m is None:
        return None, None
    ra = int(m.group(1)) / 10.0
    dec = int(m.group(3)) / 10.0 * (-1.0 if m.group(2) == "m" else 1.0)
    return ra, dec


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------
def _number(item: Mapping, key: str, where: str, *, integer: bool = False) -> float | int:
    v = item[key]
    if isinstance(v, bool) or not isinstance(v, Integral if integer else Real):
        kind = "an integer" if integer else "a number"
        raise GalleryInputError(f"{where}: {key!r} must be {kind}, got {v!r}")
    if integer:
        return int(v)
    if not math.isfinite(float(v)):
        raise GalleryInputError(f"{where}: {key!r} is {v!r}; expected a finite number")
    return float(v)


def _checked(item: Any, keys: Sequence[str], where: str) -> dict:
    if not isinstance(item, Mapping):
        raise GalleryInputError(f"{where}: expected a dict with keys {list(keys)}, got {type(item).__name__}")
    missing = [k for k in keys if k not in item]
    if missing:
        raise GalleryInputError(f"{where}: missing key(s) {missing}")
    img = np.asarray(item["image"])
    if img.shape != (3, STAMP, STAMP):
        raise GalleryInputError(f"{where}: image has shape {img.shape}; expected (3, {STAMP}, {STAMP}) g, r, z "
                                "in nanomaggies")
    if not np.issubdtype(img.dtype, np.number):
        raise GalleryInputError(f"{where}: image has dtype {img.dtype}; expected floating point nanomaggies")
    if not isinstance(item["cutout_path"], str) or not item["cutout_path"]:
        raise GalleryInputError(f"{where}: 'cutout_path' must be a non-empty string, got {item['cutout_path']!r}")
    return {"image": img, "cutout_path": item["cutout_path"], "score": _number(item, "score", where)}


def _label_prefix(label: Any) -> str:
    """``"0.75"`` → ``"075"``, ``"1.5"`` → ``"15"`` (the uid infix ``INJ_<prefix>_nnn``)."""
    if not isinstance(label, str):
        raise GalleryInputError(f"injections: θ_E label {label!r} must be a string such as '1.5'")
    try:
        value = float(label)
    except ValueError:
        raise GalleryInputError(f"injections: θ_E label {label!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise GalleryInputError(f"injections: θ_E label {label!r} must be a positive number (arcsec)")
    return label.replace(".", "")


def _real_rows(real: Sequence[Mapping]) -> list[dict]:
    rows = []
    for i, item in enumerate(real, start=1):
        uid = f"REAL_{i:03d}"
        name = item.get("cutout_path") if isinstance(item, Mapping) else None
        where = f"real lens {uid} (item {i - 1}{f', {name}' if name else ''})"
        row = _checked(item, _REAL_KEYS, where)
        row["ra"] = _number(item, "ra", where)
        row["dec"] = _number(item, "dec", where)
        if abs(row["dec"]) > 90:
            raise GalleryInputError(f"{where}: 'dec' is {row['dec']}; expected −90 … 90 deg")
        row.update(uid=uid, galaxy_id=str(item["galaxy_id"]), r_mag=total_r_mag(row["image"]))
        rows.append(row)
    return rows


def _injection_rows(injections: Mapping[str, Sequence[Mapping]]) -> dict[str, list[dict]]:
    if not isinstance(injections, Mapping):
        raise GalleryInputError(f"injections: expected a dict θ_E label → list of items, got "
                                f"{type(injections).__name__}")
    prefixes = {label: _label_prefix(label) for label in injections}
    seen: dict[str, str] = {}
    for label, prefix in prefixes.items():
        if prefix in seen:
            raise GalleryInputError(f"injections: θ_E labels {seen[prefix]!r} and {label!r} give the same uid "
                                    f"prefix INJ_{prefix}_")
        seen[prefix] = label
    out: dict[str, list[dict]] = {}
    for label in sorted(injections, key=float):
        prefix = prefixes[label]
        if isinstance(injections[label], (str, bytes)) or not isinstance(injections[label], Sequence):
            raise GalleryInputError(f"injections[{label!r}]: expected a list of dicts, got "
                                    f"{type(injections[label]).__name__}")
        rows = []
        for i, item in enumerate(injections[label], start=1):
            uid = f"INJ_{prefix}_{i:03d}"
            name = item.get("cutout_path") if isinstance(item, Mapping) else None
            where = f"injection {uid} (θ_E label {label}, item {i - 1}{f', {name}' if name else ''})"
            row = _checked(item, _INJ_KEYS, where)
            row["theta_e"] = _number(item, "theta_e", where)
            row["cell_idx"] = _number(item, "cell_idx", where, integer=True)
            row["inj_idx"] = _number(item, "inj_idx", where, integer=True)
            row.update(uid=uid, r_mag=total_r_mag(row["image"]))
            rows.append(row)
        out[label] = rows
    return out


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _gallery_entry(row: dict) -> dict:
    entry = {"uid": row["uid"], "thumb": f"thumbs/{row['uid']}.png", "cutout_path": row["cutout_path"],
             "r_mag": round(float(row["r_mag"]), 2), "score": round(float(row["score"]), 4)}
    if "theta_e" in row:
        entry.update(theta_e=float(row["theta_e"]), cell_idx=int(row["cell_idx"]), inj_idx=int(row["inj_idx"]))
    return entry


_HTML_HEAD = """<!DOCTYPE html>
<html><head>
<meta charset="utf-8">
<title>Figure 5 Gallery — Real Lenses &amp; Injections</title>
<style>
  body { font-family: Arial, sans-serif; margin: 20px; background: #1a1a2e; color: #eee; }
  h1 { color: #e94560; }
  h2 { color: #0f3460; background: #e94560; padding: 8px 12px; border-radius: 4px; }
  .gallery { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 30px; }
  .card {
    background: #16213e; border: 2px solid #333; border-radius: 8px;
    padding: 6px; text-align: center; width: 180px;
    transition: border-color 0.2s;
  }
  .card:hover { border-color: #e94560; }
  .card img { width: 160px; height: 160px; border-radius: 4px; }
  .card .uid { font-weight: bold; font-size: 12px; color: #e94560; margin-top: 4px; }
  .card .meta { font-size: 11px; color: #aaa; margin-top: 2px; }
  .card .score { font-size: 13px; font-weight: bold; margin-top: 2px; }
  .score-high { color: #00ff88; }
  .score-low { color: #ff4444; }
  .score-mid { color: #ffaa00; }
  .section-header { margin-top: 40px; }
</style>
</head><body>
<h1>Figure 5 Gallery — Select Images by UID</h1>
<p>Pick UIDs for the paper figure. Each image shows: UID, CNN score (p), r-band magnitude.</p>
"""


def _html_card(entry: dict, threshold: float, label: str | None = None) -> str:
    uid = html.escape(entry["uid"])
    cls = "high" if entry["score"] >= 0.9 else ("mid" if entry["score"] >= threshold else "low")
    meta = f"r = {entry['r_mag']:.2f}"
    if label is not None:
        meta += f'  |  θ_E = {label}"'
    return (f'<div class="card">\n  <img src="{html.escape(entry["thumb"])}" alt="{uid}">\n'
            f'  <div class="uid">{uid}</div>\n'
            f'  <div class="score score-{cls}">p = {entry["score"]:.4f}</div>\n'
            f'  <div class="meta">{html.escape(meta)}</div>\n</div>')


def gallery_html(data: dict, threshold: float = 0.3) -> str:
    """The static gallery page (F.12) of a ``gallery_data.json`` mapping: section (a) the real Tier-A
    lenses, sections (b) the injections per θ_E label, each sorted by r mag (bright first); one card per
    item with UID, p (green ≥ 0.9, amber ≥ ``threshold``, red below) and r mag (mag)."""
    parts = [_HTML_HEAD]
    real = sorted(data["real_lenses"], key=lambda e: e["r_mag"])
    parts.append('\n<div class="section-header"><h2>(a) Real Tier-A Strong Lenses</h2></div>\n'
                 f"<p>{len(real)} lenses scored. Sorted by r-mag (bright first).</p>\n<div class=\"gallery\">")
    parts += [_html_card(e, threshold) for e in real]
    parts.append("</div>")
    for label, lst in data["injections"].items():
        lab = html.escape(label)
        parts.append(f'\n<div class="section-header"><h2>(b) Injections — θ_E = {lab} arcsec</h2></div>\n'
                     f"<p>{len(lst)} injections scored. Sorted by r-mag.</p>\n<div class=\"gallery\">")
        parts += [_html_card(e, threshold, label) for e in sorted(lst, key=lambda e: e["r_mag"])]
        parts.append("</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _check_catalogue(catalogue: pd.DataFrame | None) -> pd.DataFrame | None:
    if catalogue is None:
        return None
    if not isinstance(catalogue, pd.DataFrame):
        raise GalleryInputError(f"catalogue: expected a DataFrame (lenslib.data.catalogues.read_catalogue), "
                                f"got {type(catalogue).__name__}")
    missing = [c for c in _CATALOGUE_COLUMNS if c not in catalogue.columns]
    if missing:
        raise GalleryInputError(f"catalogue: missing column(s) {missing}; has {list(catalogue.columns)}")
    ra = pd.to_numeric(catalogue["ra"], errors="coerce").to_numpy(float)
    dec = pd.to_numeric(catalogue["dec"], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (np.abs(dec) > 90)
    if bad.any():
        raise GalleryInputError(f"catalogue: {int(bad.sum())} row(s) without a valid position "
                                f"(first: row {int(np.flatnonzero(bad)[0])})")
    return catalogue.reset_index(drop=True)


def _none_if_missing(v: Any) -> Any:
    """``None`` for a missing catalogue value (None, NaN, pd.NA), else the value."""
    return None if v is None or (np.ndim(v) == 0 and bool(pd.isna(v))) else v


def missed_entries(real_rows: list[dict], gallery_real: list[dict], catalogue: pd.DataFrame | None,
                   threshold: float) -> list[dict]:
    """F.13 rows: the real lenses whose gallery score (4 dp) is below ``threshold``, ascending score, each
    with the brick centre parsed from its file name and the nearest catalogue entry within 0.20° of the
    lens's own (ra, dec) (astropy great-circle match; desi_name, zlens, grading, match_sep_deg are null
    when there is none or no catalogue)."""
    by_uid = {r["uid"]: r for r in real_rows}
    missed = sorted((e for e in gallery_real if e["score"] < threshold), key=lambda e: e["score"])
    out = []
    cat = catalogue
    idx = sep = None
    if missed and cat is not None and len(cat):
        rows = [by_uid[e["uid"]] for e in missed]
        lens = SkyCoord([r["ra"] for r in rows] * u.deg, [r["dec"] for r in rows] * u.deg)
        ref = SkyCoord(pd.to_numeric(cat["ra"]).to_numpy(float) * u.deg,
                       pd.to_numeric(cat["dec"]).to_numpy(float) * u.deg)
        idx, sep2d, _ = lens.match_to_catalog_sky(ref)
        sep = sep2d.to_value(u.deg)
    for k, e in enumerate(missed):
        brick_ra, brick_dec = brick_position(by_uid[e["uid"]]["cutout_path"])
        entry = {"uid": e["uid"], "r_mag": e["r_mag"], "score": e["score"], "brick_ra": brick_ra,
                 "brick_dec": brick_dec, "desi_name": None, "zlens": None, "grading": None, "match_sep_deg": None}
        if idx is not None and sep[k] <= MATCH_RADIUS_DEG:
            c = cat.iloc[int(idx[k])]
            z = _none_if_missing(c["zlens"])
            entry.update(desi_name=_none_if_missing(c["name"]), zlens=None if z is None else float(z),
                         grading=_none_if_missing(c["grading"]), match_sep_deg=round(float(sep[k]), 4))
        out.append(entry)
    return out


def _tex_escape(s: str) -> str:
    return re.sub(r"([_&%#$])", r"\\\1", s)


def _tex_score(s: float) -> str:
    return f"{s:.4f}" if s < 0.1 else f"{s:.3f}"


def missed_table_tex(missed: list[dict], threshold: float = 0.3) -> str:
    """The LaTeX ``table`` of the missed Tier-A lenses (F.13): ID, DESI name, r (2 dp, mag), CNN score
    (4 dp below 0.1, else 3 dp), z_lens (3 dp); ``--`` where the cross-match found nothing."""
    n = len(missed)
    caption = (f"The {n} Tier-A lenses missed by the CNN at the $p > {threshold:g}$ detection threshold.  "
               "Sorted by ascending CNN score.  $z_{\\rm lens}$ from the DESI Strong Lensing catalogue "
               f"cross-matched by position ($< {MATCH_RADIUS_DEG * 60:g}\\;\\mathrm{{arcmin}}$).")
    if n:
        caption += (f"  All missed lenses have $r$-band magnitudes $\\leq {max(e['r_mag'] for e in missed):.2f}$ "
                    f"and CNN scores $\\leq {_tex_score(max(e['score'] for e in missed))}$.")
    lines = ["\\begin{table}", "\\centering", f"\\caption{{{caption}}}", "\\label{tab:missed}", "\\small",
             "\\begin{tabular}{llccl}", "\\hline",
             "ID & DESI name & $r$ (mag) & CNN score & $z_{\\rm lens}$ \\\\", "\\hline"]
    for e in missed:
        score = f"${_tex_score(e['score'])}$"
        name = _tex_escape(e["desi_name"]) if e["desi_name"] else "--"
        z = f"${e['zlens']:.3f}$" if e["zlens"] is not None else "--"
        lines.append(f"{_tex_escape(e['uid'])} & {name} & ${e['r_mag']:.2f}$ & {score} & {z} \\\\")
    lines += ["\\hline", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def _score_text(p: float) -> str:
    return f"{p:.2f}" if p >= 0.1 else (f"{p:.3f}" if p >= 0.001 else f"{p:.4f}")


def comparison_picks(real_rows: list[dict], inj_rows: dict[str, list[dict]], *, seed: int, n_real_shown: int,
                     n_per_theta: int) -> tuple[list[dict], dict[str, list[dict]]]:
    """The v14 Figure 5 picks (F.14): one ``numpy.random.default_rng(seed)`` draws ``n_real_shown`` Tier-A
    lenses without replacement (then sorted by r mag), then ``n_per_theta`` injections per θ_E label in
    label order (in the order drawn); fewer when a list is shorter."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(real_rows), size=min(n_real_shown, len(real_rows)), replace=False)
    real = sorted((real_rows[int(i)] for i in pick), key=lambda r: r["r_mag"])
    inj = {}
    for label, rows in inj_rows.items():
        idx = rng.choice(len(rows), size=min(n_per_theta, len(rows)), replace=False)
        inj[label] = [rows[int(i)] for i in idx]
    return real, inj


def comparison_figure_png(real: list[dict], inj: dict[str, list[dict]], path: Path) -> Path:
    """Draw the v14 comparison figure (G.15) to ``path``: the real lenses in the top rows, then one
    column per θ_E label with its injections below; 3 columns (more if there are more labels), 7 in wide,
    each thumbnail titled with p and r mag (mag); PNG at 150 dpi."""
    ncol = max(3, len(inj))
    n_a = max(1, -(-len(real) // ncol))
    n_b = max(1, max((len(v) for v in inj.values()), default=0))
    nrow = n_a + n_b
    left, right, wspace, gap, head = 0.02, 0.98, 0.08, 0.5, 0.45  # fractions; gap and head in inches
    panel = FIGURE_WIDTH_IN * (right - left) / (ncol + (ncol - 1) * wspace)  # square panel side, inches
    height = nrow * panel + (nrow - 1) * gap + head + 0.1
    fig = Figure(figsize=(FIGURE_WIDTH_IN, height), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    fig.subplots_adjust(left=left, right=right, bottom=0.1 / height, top=1 - head / height, wspace=wspace,
                        hspace=gap / panel)

    def show(ax, row: dict, extra: str = "") -> None:
        ax.imshow(display_rgb(row["image"]), origin="lower")
        ax.set_title(f"p={_score_text(row['score'])},  r={row['r_mag']:.1f}{extra}", fontsize=7)

    for i, row in enumerate(real):
        show(axes[i // ncol, i % ncol], row)
    for j, (label, rows) in enumerate(inj.items()):
        for k, row in enumerate(rows):
            show(axes[n_a + k, j], row, f",  θ_E={label}″")
    top_a = axes[0, 0].get_position().y1
    top_b = axes[n_a, 0].get_position().y1
    fig.text(0.02, top_a + 0.3 / height, "(a) Real Tier-A strong lenses (random sample)",
             fontsize=9, weight="bold")
    fig.text(0.02, top_b + 0.3 / height, "(b) Parametric injections (D06 grid, no Poisson)",
             fontsize=9, weight="bold")
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI)
    return Path(path)


def _audit_real(row: dict) -> dict:
    return {"cutout_path": row["cutout_path"], "r_mag": float(row["r_mag"]), "score": float(row["score"])}


def _audit_inj(row: dict) -> dict:
    return {**_audit_real(row), "theta_e": float(row["theta_e"]), "cell_idx": int(row["cell_idx"]),
            "inj_idx": int(row["inj_idx"])}


# --------------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------------
def write_gallery_artefacts(results: Path, real: list[dict], injections: dict[str, list[dict]], *,
                            catalogue: pd.DataFrame | None = None, seed: int = 42, n_per_theta: int = 2,
                            n_real_shown: int = 6, threshold: float = 0.3) -> dict:
    """Write the gallery, missed Tier-A and comparison-figure artefacts (E.6, F.12–F.14) under ``results``.

    Parameters
    ----------
    results : Path
        The results folder (the D06 layout root); ``gallery/`` and ``comparison_figure/`` are written in it.
    real : list of dict
        Validation Tier-A lenses in manifest order, each {"cutout_path": str, "image": (3, 101, 101) g, r, z
        in nanomaggies (NaN allowed), "score": float (CNN p, dimensionless), "ra", "dec": float (deg),
        "galaxy_id": str}; uids ``REAL_{i:03d}`` (1-based).
    injections : dict of str to list of dict
        θ_E label ("0.75", "1.5", "2.5"; arcsec) → selected grid injections, each {"cutout_path": str
        (grid injection id), "image": (3, 101, 101) host + arc in nanomaggies, "score": float,
        "theta_e": float (true θ_E, arcsec), "cell_idx": int, "inj_idx": int}; uids ``INJ_<label without
        the dot>_{i:03d}`` (1-based, list order). Labels are written in increasing θ_E.
    catalogue : DataFrame, optional
        DESI candidates (:func:`lenslib.data.catalogues.read_catalogue` with kind "desi": name, ra, dec
        in deg, zlens, grading) for the missed-lens cross-match; without it the match fields are null.
    seed : int
        Seed of ``numpy.random.default_rng`` for the comparison-figure picks.
    n_per_theta : int
        Injections shown per θ_E label in the comparison figure.
    n_real_shown : int
        Real lenses shown in the comparison figure.
    threshold : float
        Detection threshold on p; lenses with a gallery score (4 dp) below it are "missed".

    Returns
    -------
    dict
        {"n_real", "n_injections" (per label), "n_thumbs", "n_missed", "n_missed_matched", "n_real_shown",
        "n_injections_shown", "paths" (name → absolute path of every file written, thumbnails excluded),
        "thumbs_dir"}.

    Raises
    ------
    GalleryInputError
        A missing key, an image not of shape (3, 101, 101), a non-finite score or position, a bad θ_E label
        or catalogue, naming the item (uid, position in its list, cutout path).
    """
    if isinstance(real, (str, bytes)) or not isinstance(real, Sequence):
        raise GalleryInputError(f"real: expected a list of dicts, got {type(real).__name__}")
    for name, v in (("n_per_theta", n_per_theta), ("n_real_shown", n_real_shown), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, Integral) or v < 0:
            raise GalleryInputError(f"parameter {name!r} must be a non-negative integer, got {v!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not math.isfinite(threshold):
        raise GalleryInputError(f"parameter 'threshold' must be a finite number, got {threshold!r}")
    real_rows = _real_rows(real)
    inj_rows = _injection_rows(injections)
    cat = _check_catalogue(catalogue)

    results = Path(results)
    gdir, cdir = results / "gallery", results / "comparison_figure"
    thumbs = gdir / "thumbs"
    all_rows = real_rows + [r for rows in inj_rows.values() for r in rows]
    for row in all_rows:
        render_thumbnail(row["image"], thumbs / f"{row['uid']}.png")

    data = {"timestamp_utc": utc_now(), "real_lenses": [_gallery_entry(r) for r in real_rows],
            "injections": {label: [_gallery_entry(r) for r in rows] for label, rows in inj_rows.items()}}
    paths = {"gallery_data": write_json(gdir / "gallery_data.json", data, allow_nan=False),
             "gallery_html": _write_text(gdir / "gallery.html", gallery_html(data, threshold))}

    missed = missed_entries(real_rows, data["real_lenses"], cat, threshold)
    paths["missed_tier_a"] = write_json(gdir / "missed_tier_a.json", missed, allow_nan=False)
    paths["missed_tier_a_table"] = _write_text(gdir / "missed_tier_a_table.tex", missed_table_tex(missed, threshold))

    pick_real, pick_inj = comparison_picks(real_rows, inj_rows, seed=int(seed), n_real_shown=int(n_real_shown),
                                           n_per_theta=int(n_per_theta))
    n_inj_shown = sum(len(v) for v in pick_inj.values())
    ncol = max(3, len(pick_inj))
    nrow = max(1, -(-len(pick_real) // ncol)) + max(1, max((len(v) for v in pick_inj.values()), default=0))
    audit = {
        "timestamp_utc": utc_now(),
        "version": AUDIT_VERSION,
        "rng_seed": int(seed),
        "description": (f"{nrow}-row x {ncol}-col layout at {FIGURE_WIDTH_IN:g}-inch width (MNRAS textwidth): "
                        f"(a) {len(pick_real)} randomly sampled real Tier-A lenses sorted by r-mag, "
                        f"(b) {n_inj_shown} randomly sampled injections ({int(n_per_theta)} per theta_E). "
                        "No pairing or brightness matching."),
        "target_theta_e": [float(label) for label in inj_rows],
        "n_per_theta": int(n_per_theta),
        "n_tier_a_total": len(real_rows),
        "n_tier_a_shown": len(pick_real),
        "panel_a_real_lenses": [_audit_real(r) for r in pick_real],
        "panel_b_injections": {label: [_audit_inj(r) for r in rows] for label, rows in pick_inj.items()},
    }
    paths["comparison_audit"] = write_json(cdir / "comparison_audit_v2.json", audit, allow_nan=False)
    paths["comparison_figure"] = comparison_figure_png(pick_real, pick_inj, cdir / "fig5_comparison.png")

    return {"n_real": len(real_rows), "n_injections": {k: len(v) for k, v in inj_rows.items()},
            "n_thumbs": len(all_rows), "n_missed": len(missed),
            "n_missed_matched": sum(e["desi_name"] is not None for e in missed),
            "n_real_shown": len(pick_real), "n_injections_shown": n_inj_shown,
            "paths": {k: str(Path(v).resolve()) for k, v in paths.items()}, "thumbs_dir": str(thumbs.resolve())}
