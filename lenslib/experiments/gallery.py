"""Gallery (paper Figure 5, Appendix B): the HTML gallery, the comparison panel, the missed Tier-A table."""

from __future__ import annotations

import html
import io
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lenslib.experiments.artefacts import D06Artefacts, NotInTheseArtefacts

# The final paper's hand-picked Figure 5 examples (PAPER_SPEC §E.6).
FINAL_REAL_PICKS = ["REAL_070", "REAL_075", "REAL_051", "REAL_017", "REAL_086", "REAL_063", "REAL_040", "REAL_107"]
FINAL_INJ_PICKS = ["INJ_075_033", "INJ_075_032", "INJ_075_041", "INJ_15_004", "INJ_15_020", "INJ_15_002",
                   "INJ_25_046", "INJ_25_023"]


def items(art: D06Artefacts) -> pd.DataFrame:
    """Every gallery item (112 real lenses, then the injections) with its section."""
    g = art.gallery_data()
    rows = [{**r, "section": "real", "theta_e_label": np.nan} for r in g["real_lenses"]]
    for te, lst in g["injections"].items():
        rows += [{**r, "section": "injection", "theta_e_label": float(te)} for r in lst]
    return pd.DataFrame(rows)


def missed_table(art: D06Artefacts, threshold: float = 0.3) -> pd.DataFrame:
    """Tier-A lenses scored below the threshold (from the per-lens scores), ascending score,
    with the DESI name and z_lens of the published cross-match."""
    real = items(art).query("section == 'real'")
    missed = real[real["score"] < threshold].sort_values("score")[["uid", "r_mag", "score"]]
    cols = ["uid", "desi_name", "zlens", "match_sep_deg"]
    xmatch = pd.DataFrame(art.missed_tier_a(), columns=cols)  # columns named: a run may miss none
    return missed.merge(xmatch, on="uid", how="left").reset_index(drop=True)


def missed_median_score(art: D06Artefacts) -> float:
    return float(missed_table(art)["score"].median())


def missed_r_mag_max(art: D06Artefacts, threshold: float = 0.3, bound: float | None = None) -> float:
    """Faintest r magnitude among the missed Tier-A lenses; with ``bound`` (the paper's "all 12 have
    r <= 20"), ``bound`` itself when every missed lens has r <= bound, else the faintest r (which then
    disagrees with the printed bound). The r magnitudes are total-cutout magnitudes (PAPER_SPEC §I.14)."""
    faintest = float(missed_table(art, threshold)["r_mag"].max())
    return float(bound) if bound is not None and faintest <= float(bound) else faintest


def missed_ranked(art: D06Artefacts, column: str, by: str | None = None, rank: int = 0,
                  ascending: bool = True, threshold: float = 0.3) -> float:
    """``column`` of the missed Tier-A lens at position ``rank`` (0-based) when the missed lenses are sorted by
    ``by`` (default ``column`` itself): the lowest / highest z_lens of Appendix B (``rank`` 0, ascending /
    descending), the second-lowest (``rank`` 1), the r of the highest-z_lens system (column r_mag, by zlens)."""
    t = missed_table(art, threshold).sort_values(by or column, ascending=ascending, kind="mergesort")
    if not 0 <= int(rank) < len(t):
        raise NotInTheseArtefacts(f"rank {rank} outside the {len(t)} missed lenses")
    return float(t[column].iloc[int(rank)])


def missed_match_sep_max_arcmin(art: D06Artefacts, bound: float | None = None, threshold: float = 0.3) -> float:
    """Largest brick-centre-to-catalogue separation of the missed lenses' z_lens matches, in arcmin; with
    ``bound`` (Table B1 caption: "< 12 arcmin"), ``bound`` itself when every separation is below it, else the
    largest (which then disagrees with the printed bound). The match is of the brick centre, not of the lens
    position (PAPER_SPEC §I.13)."""
    largest = 60.0 * float(missed_table(art, threshold)["match_sep_deg"].max())
    return float(bound) if bound is not None and largest < float(bound) else largest


def missed_desi_name_coord(art: D06Artefacts, uid: str, coord: str = "ra") -> float:
    """|RA| or |Dec| (deg) encoded in the DESI name ``DESI-RRR.rrrr±DD.dddd`` that Appendix B's cross-match
    gives the missed lens ``uid`` (absolute: the paper types the sign of Dec apart from the number)."""
    import re

    if coord not in ("ra", "dec"):
        raise ValueError(f"coord must be 'ra' or 'dec', got {coord!r}")
    t = missed_table(art)
    hit = t.loc[t["uid"] == uid, "desi_name"]
    if hit.empty or not isinstance(hit.iloc[0], str):
        raise NotInTheseArtefacts(f"no missed Tier-A lens {uid!r} with a DESI name")
    m = re.fullmatch(r"DESI-(\d+\.\d+)([+-])(\d+\.\d+)", hit.iloc[0].strip())
    if not m:
        raise ValueError(f"DESI name {hit.iloc[0]!r} of {uid} is not DESI-RRR.rrrr±DD.dddd")
    return float(m.group(1) if coord == "ra" else m.group(3))


def fig5_picks(art: D06Artefacts, real_uids: list[str] = FINAL_REAL_PICKS,
               inj_uids: list[str] = FINAL_INJ_PICKS) -> pd.DataFrame:
    """The final-paper Figure 5 picks (8 real, 8 injections; PAPER_SPEC §E.6) with section, score, r_mag, the
    gallery's θ_E label and, for injections, ``theta_e_cell``: the θ_E of the grid cell the injection comes
    from (cells are 1-based, 35 (PSF, depth) cells per θ_E, so cell c has THETA_E[(c − 1) // 35]; the gallery
    labels the first cell of each block with the next θ_E, discrepancy i12)."""
    from lenslib.experiments.compute.grid import DEPTH_5SIG, PSF_FWHM, THETA_E

    df = items(art).set_index("uid")
    missing = [u for u in [*real_uids, *inj_uids] if u not in df.index]
    if missing:
        raise NotInTheseArtefacts(f"Figure 5 picks not in the gallery: {', '.join(missing)}")
    t = df.loc[[*real_uids, *inj_uids], ["section", "score", "r_mag", "theta_e_label", "cell_idx"]].copy()
    per_te = len(PSF_FWHM) * len(DEPTH_5SIG)
    t["theta_e_cell"] = [THETA_E[(int(c) - 1) // per_te] if pd.notna(c) else np.nan for c in t["cell_idx"]]
    return t.reset_index()


def fig5_pick_stat(art: D06Artefacts, column: str = "score", stat: str = "max", section: str = "real",
                   theta_e: float | None = None, by_label: bool = False, score_above: float | None = None,
                   score_below: float | None = None) -> float:
    """``stat`` (min, max, median or count) of ``column`` over the Figure 5 picks of ``section`` (real /
    injection), optionally only those of θ_E ``theta_e`` (of their grid cell, or of the gallery label with
    ``by_label``) and with score_above < p < score_below (the caption's "r = 16.3-21.1", "p ≈ 0.47-0.49",
    "θ_E = 0.75 (3 examples)", "p = 0.69")."""
    if stat not in ("min", "max", "median", "count"):
        raise ValueError(f"stat must be min, max, median or count, got {stat!r}")
    t = fig5_picks(art)
    t = t[t["section"] == section]
    if theta_e is not None:
        t = t[(t["theta_e_label" if by_label else "theta_e_cell"] - float(theta_e)).abs() < 1e-9]
    if score_above is not None:
        t = t[t["score"] > float(score_above)]
    if score_below is not None:
        t = t[t["score"] < float(score_below)]
    if stat == "count":
        return float(len(t))
    if t.empty:
        raise NotInTheseArtefacts(f"no Figure 5 {section} pick matches")
    return float(getattr(t[column], stat)())


def fig5_pick_at(art: D06Artefacts, column: str = "theta_e_cell", section: str = "injection", by: str = "score",
                 rank: int = 0, ascending: bool = False) -> float:
    """``column`` of the Figure 5 pick of ``section`` at position ``rank`` (0-based) when sorted by ``by``
    (default: highest score first; the caption's "one extended injection at θ_E = 2.50 is detected")."""
    t = fig5_picks(art)
    t = t[t["section"] == section].sort_values(by, ascending=ascending, kind="mergesort")
    if not 0 <= int(rank) < len(t):
        raise NotInTheseArtefacts(f"rank {rank} outside the {len(t)} Figure 5 {section} picks")
    return float(t[column].iloc[int(rank)])


def fig5_score_bound(art: D06Artefacts, section: str = "real", n: int = 4, bound: float = 0.9,
                     which: str = "top") -> float:
    """A printed score bound of the Figure 5 caption: ``bound`` itself when the ``n`` highest-scoring picks
    of ``section`` all have p > bound (``which="top"``: "four are high-confidence detections (p > 0.9)") or the
    ``n`` lowest all have p < bound (``"bottom"``: "seven of eight are rejected (p < 0.05)"), else the score
    that breaks it (which then disagrees with the printed bound)."""
    if which not in ("top", "bottom"):
        raise ValueError(f"which must be 'top' or 'bottom', got {which!r}")
    t = fig5_picks(art)
    s = t.loc[t["section"] == section, "score"].sort_values(ascending=(which == "bottom")).iloc[: int(n)]
    if len(s) < int(n):
        raise NotInTheseArtefacts(f"only {len(s)} Figure 5 {section} picks")
    worst = float(s.min() if which == "top" else s.max())
    ok = worst > float(bound) if which == "top" else worst < float(bound)
    return float(bound) if ok else worst


def _card(item: dict) -> str:
    title = html.escape(str(item["uid"]))
    return (f'<figure class="card"><img src="{html.escape(item["thumb"])}" alt="{title}" loading="lazy">'
            f'<figcaption><b>{title}</b><br>p = {item["score"]:.4f} &middot; r = {item["r_mag"]:.2f}'
            '</figcaption></figure>')


def write_gallery(art: D06Artefacts, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/thumbs/*.png``; returns the page path."""
    out_dir = Path(out_dir)
    (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
    df = items(art)
    thumbs = art.thumbnails(list(df["thumb"]))
    for name, data in thumbs.items():
        (out_dir / name).write_bytes(data)
    sections = [("(a) Real Tier-A strong lenses", df[df["section"] == "real"])]
    for te in sorted(df["theta_e_label"].dropna().unique()):
        sections.append((f"(b) Injections, θ_E = {te:g} arcsec (as labelled in D06)",
                         df[df["theta_e_label"] == te]))
    body = "\n".join(
        f"<h2>{html.escape(t)} <small>({len(s)})</small></h2><div class='grid'>"
        + "".join(_card(r) for r in s.to_dict("records")) + "</div>"
        for t, s in sections
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Gallery: real Tier-A lenses and injections</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}}
.grid{{display:flex;flex-wrap:wrap;gap:10px}}\
.card{{margin:0;background:#fff;border:1px solid #ddd;padding:4px;width:150px}}
.card img{{width:150px;height:150px;display:block}}figcaption{{font-size:12px}}</style></head><body>
<h1>Gallery: real Tier-A lenses and injections</h1>
<p>Thumbnails and scores from the published D06 artefacts (gallery_data.json). p is the CNN score,
r the total r-band magnitude of the cutout. Injections are labelled with the θ_E of the gallery block;
PAPER_SPEC §E.6 notes that the first cell of each block belongs to the previous θ_E.</p>
{body}</body></html>"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def comparison_figure(art: D06Artefacts, real_uids: list[str] = FINAL_REAL_PICKS,
                      inj_uids: list[str] = FINAL_INJ_PICKS) -> tuple[plt.Figure, list[str]]:
    """Figure 5: real Tier-A lenses (top) and injections (bottom), titled with p and r.

    Returns the figure and the uids that have no thumbnail in the artefacts (left blank)."""
    df = items(art).set_index("uid")
    wanted = list(real_uids) + list(inj_uids)
    present = [u for u in wanted if u in df.index]
    missing = [u for u in wanted if u not in df.index]
    thumbs = art.thumbnails([df.loc[u, "thumb"] for u in present])
    ncol = 4
    nrow_a, nrow_b = -(-len(real_uids) // ncol), -(-len(inj_uids) // ncol)
    fig, axes = plt.subplots(nrow_a + nrow_b, ncol, figsize=(7, 1.9 * (nrow_a + nrow_b)))
    axes = np.atleast_2d(axes)
    for ax in axes.flat:
        ax.axis("off")
    for i, u in enumerate(wanted):
        row = i // ncol if i < len(real_uids) else nrow_a + (i - len(real_uids)) // ncol
        col = i % ncol if i < len(real_uids) else (i - len(real_uids)) % ncol
        ax = axes[row, col]
        if u not in df.index:
            ax.set_title(f"{u}\n(no thumbnail)", fontsize=7)
            continue
        it = df.loc[u]
        ax.imshow(mpimg.imread(io.BytesIO(thumbs[it["thumb"]]), format="png"))
        label = f"p={it['score']:.3g}, r={it['r_mag']:.1f}"
        if it["section"] == "injection":
            label += f"\nθ_E={it['theta_e_label']:g}″"
        ax.set_title(label, fontsize=7)
    axes[0, 0].text(0, 1.35, "(a) Real Tier-A strong lenses", transform=axes[0, 0].transAxes, fontsize=9)
    axes[nrow_a, 0].text(0, 1.35, "(b) Parametric injections (D06 grid, no Poisson)",
                         transform=axes[nrow_a, 0].transAxes, fontsize=9)
    fig.tight_layout()
    return fig, missing
