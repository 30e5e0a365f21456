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
        raise NotInTheseArtefacts(f"the name {hit.iloc[0]!r} of {uid} is not a DESI name (DESI-RRR.rrrr±DD.dddd): "
                                  "the missed lens of these artefacts is not the authors' lens")
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


THRESHOLD = 0.3


def _population(item: dict) -> str:
    return "real" if item["section"] == "real" else f"inj-{item['theta_e_label']:g}"


def _card(item: dict, prefix: str = "") -> str:
    """One stamp: name, score, magnitude and (for injections) θ_E; ``data-*`` attributes for the filters."""
    title = html.escape(str(item["uid"]))
    outcome = "detected" if item["score"] >= THRESHOLD else "missed"
    te = "" if item["section"] == "real" else f" &middot; θ<sub>E</sub> = {item['theta_e_label']:g}″"
    return (f'<figure class="lenslib-card" data-pop="{_population(item)}" data-outcome="{outcome}" '
            f'style="margin:0;border:1px solid #ccc;padding:3px;width:128px;background:#fff">'
            f'<img src="{html.escape(prefix + item["thumb"])}" alt="{title}" loading="lazy" width="128" height="128" '
            f'style="display:block;width:128px;height:128px">'
            f'<figcaption style="font-size:12px;line-height:1.3"><b>{title}</b> <i>({outcome})</i><br>'
            f'p = {item["score"]:.4f} &middot; r = {item["r_mag"]:.2f}{te}</figcaption></figure>')


_FILTER_JS = """<script>
(function () {
  function apply() {
    var pop = document.getElementById('lenslib-pop').value, out = document.getElementById('lenslib-out').value;
    var shown = 0;
    document.querySelectorAll('.lenslib-card').forEach(function (c) {
      var ok = (pop === 'all' || c.dataset.pop === pop) && (out === 'all' || c.dataset.outcome === out);
      c.style.display = ok ? '' : 'none'; if (ok) { shown += 1; }
    });
    document.getElementById('lenslib-count').textContent = shown + ' shown';
  }
  document.getElementById('lenslib-pop').addEventListener('change', apply);
  document.getElementById('lenslib-out').addEventListener('change', apply);
  apply();
})();
</script>"""


def gallery_html(art: D06Artefacts, prefix: str = "") -> str:
    """Every gallery stamp as an HTML fragment, filterable by population and by detected/missed at p = 0.3.

    ``prefix``: the path from the page to the folder that holds ``thumbs/`` (see :func:`write_gallery`)."""
    df = items(art)
    pops = [("all", "all populations"), ("real", "real Tier-A lenses")]
    pops += [(f"inj-{te:g}", f"injections, θ_E = {te:g}″") for te in sorted(df["theta_e_label"].dropna().unique())]
    options = "".join(f'<option value="{v}">{html.escape(t)}</option>' for v, t in pops)
    controls = (f'<p><label>Population <select id="lenslib-pop">{options}</select></label> '
                '<label>Outcome at p = 0.3 <select id="lenslib-out"><option value="all">all</option>'
                '<option value="detected">detected</option><option value="missed">missed</option></select></label> '
                '<span id="lenslib-count"></span></p>')
    cards = "".join(_card(r, prefix) for r in df.to_dict("records"))
    return (f'<div class="lenslib-gallery">{controls}'
            f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cards}</div></div>{_FILTER_JS}')


def write_gallery(art: D06Artefacts, out_dir: Path, book_href: str = "../index.html") -> Path:
    """Write ``out_dir/index.html`` (a standalone copy of the gallery, linking back to the book at ``book_href``)
    and ``out_dir/thumbs/*.png``; returns the page path."""
    out_dir = Path(out_dir)
    (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
    df = items(art)
    thumbs = art.thumbnails(list(df["thumb"]))
    for name, data in thumbs.items():
        (out_dir / name).write_bytes(data)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Gallery: real Tier-A lenses and injections</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}}</style></head><body>
<p><a href="{html.escape(book_href)}">&larr; back to the book</a></p>
<h1>Gallery: real Tier-A lenses and injections</h1>
<p>{len(df)} stamps with their CNN score p and total r magnitude; injections carry the θ<sub>E</sub> of their
gallery block.</p>
{gallery_html(art)}</body></html>"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def comparison_figure(art: D06Artefacts, real_uids: list[str] = FINAL_REAL_PICKS,
                      inj_uids: list[str] = FINAL_INJ_PICKS, ncol: int = 4, stamp_in: float = 1.7,
                      fontsize: float = 9) -> tuple[plt.Figure, list[str]]:
    """Figure 5: real Tier-A lenses (a) and injections (b) in rows of ``ncol`` stamps of ``stamp_in`` inches,
    each titled with p and r (and θ_E for injections), each section under its own heading.

    Returns the figure and the uids that have no thumbnail in the artefacts (left blank)."""
    df = items(art).set_index("uid")
    wanted = list(real_uids) + list(inj_uids)
    present = [u for u in wanted if u in df.index]
    missing = [u for u in wanted if u not in df.index]
    thumbs = art.thumbnails([df.loc[u, "thumb"] for u in present])
    sections = [(p, lst) for p, lst in (("(a) Real Tier-A strong lenses", list(real_uids)),
                                        ("(b) Parametric injections (D06 grid, no Poisson)", list(inj_uids))) if lst]

    def label(u: str) -> str:
        if u not in df.index:
            return f"{u}\n(no thumbnail)"
        it = df.loc[u]
        text = f"p = {it['score']:.4f}, r = {it['r_mag']:.1f}"
        if it["section"] == "injection":
            text += f"\n$\\theta_\\mathrm{{E}}$ = {it['theta_e_label']:g}″"
        return text

    # layout in inches, top to bottom: per section a heading band, then rows of (title band, stamp)
    line = fontsize * 1.3 / 72
    margin, gap, heading, pad = 0.04, 0.06, 2.6 * line, 0.07
    rows = []  # (section heading or None, uids of the row, title lines)
    for title, lst in sections:
        for k in range(0, len(lst), ncol):
            chunk = lst[k:k + ncol]
            rows.append((title if k == 0 else None, chunk, max(label(u).count("\n") + 1 for u in chunk)))
    section_gap = 0.15  # between the last stamps of (a) and the heading of (b)
    height = 2 * margin + sum((heading if h else gap) + n * line + pad + stamp_in for h, _, n in rows)
    height += section_gap * (len(sections) - 1)
    width = 2 * margin + ncol * stamp_in + (ncol - 1) * gap
    fig = plt.figure(figsize=(width, height))
    y = height - margin
    for r, (head, chunk, n_lines) in enumerate(rows):
        if head and r:
            y -= section_gap
        if head:
            fig.text(margin / width, (y - 0.35 * heading) / height, head, ha="left", va="center",
                     fontsize=fontsize + 2, fontweight="bold")
            y -= heading
        else:
            y -= gap
        y -= n_lines * line + pad + stamp_in
        for c, u in enumerate(chunk):
            ax = fig.add_axes(((margin + c * (stamp_in + gap)) / width, y / height, stamp_in / width,
                               stamp_in / height))
            ax.set_axis_off()
            ax.set_title(label(u), fontsize=fontsize, pad=4, linespacing=1.1)
            if u not in df.index:
                continue
            img = mpimg.imread(io.BytesIO(thumbs[df.loc[u, "thumb"]]), format="png")
            ink = np.argwhere((img[..., :3] < 0.98).any(axis=-1))  # crop the thumbnail's white frame
            if len(ink):
                (r0, c0), (r1, c1) = ink.min(axis=0), ink.max(axis=0) + 1
                img = img[r0:r1, c0:c1]
            ax.imshow(img, interpolation="bilinear", aspect="auto")
    return fig, missing
