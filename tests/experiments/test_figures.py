"""Layout checks of the paper's figures drawn from the D06 artefacts: nothing overprints, text is legible.

Each check measures the drawn artists (display boxes after a draw), so it fails on the defects readers
reported: labels crossed by error bars, blank empty bins, tiny thumbnails, overlapping headings."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from lenslib.experiments import figures, gallery
from lenslib.injection import InjectionPriors, draw
from lenslib.injection.plots import priors_figure

MIN_PT = 8


@pytest.fixture
def drawn():
    """``drawn(fig)`` draws the figure and returns its renderer; every figure is closed afterwards."""
    figs = []

    def go(fig):
        figs.append(fig)
        fig.canvas.draw()
        return fig.canvas.get_renderer()

    yield go
    for fig in figs:
        plt.close(fig)


def _texts(artist) -> list[Text]:
    """The non-empty texts that are drawn: visible all the way down, no axis of an axes with its axis off."""
    if not artist.get_visible():
        return []
    if isinstance(artist, Text):
        return [artist] if artist.get_text().strip() else []
    hidden = (artist.xaxis, artist.yaxis) if isinstance(artist, Axes) and not artist.axison else ()
    return [t for c in artist.get_children() if c not in hidden for t in _texts(c)]


def _small_texts(fig) -> list[str]:
    return [t.get_text() for t in _texts(fig) if t.get_fontsize() < MIN_PT]


def _overlapping(boxes: list[tuple[str, Bbox]]) -> list[tuple[str, str]]:
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


def test_fig1_n_labels_clear_of_error_bars(art, drawn):
    fig = figures.fig1_completeness(art)
    r = drawn(fig)
    ax = fig.axes[1]
    labels = [t for t in ax.texts if t.get_text().startswith("n = ")]
    assert len(labels) == 8
    boxes = [t.get_window_extent(r) for t in labels]
    bars = [Bbox(ax.transData.transform(seg)) for c in ax.collections if isinstance(c, LineCollection)
            for seg in c.get_segments()]
    assert len(bars) == 8  # one error bar per bar
    assert not [1 for b in boxes for e in bars if b.overlaps(e)]
    assert not _overlapping([(t.get_text(), b) for t, b in zip(labels, boxes, strict=True)])
    assert all(ax.bbox.contains(b.x0, b.y1) for b in boxes)  # inside the axes: the ylim leaves room
    assert not _small_texts(fig)


@pytest.mark.parametrize("condition", ["no_poisson", "poisson"])
def test_fig2_empty_bins_show_a_dash(art, drawn, condition):
    fig = figures.fig2_completeness_maps(art, condition)
    r = drawn(fig)
    left, right = fig.axes[:2]
    n_empty = int(np.isnan(right.images[0].get_array().filled(np.nan)).sum())
    assert n_empty == 11  # the 22.5 mag depth row has no hosts
    dashes = [t for t in right.texts if t.get_text() == "–"]
    assert len(dashes) == n_empty
    # the empty cells are drawn (not transparent) and the dash contrasts with them
    bad = np.array(right.images[0].get_cmap().get_bad())
    assert bad[3] == 1 and not np.allclose(bad[:3], 1)
    for t in dashes:
        assert np.abs(np.array(plt.matplotlib.colors.to_rgb(t.get_color())) - bad[:3]).max() > 0.4
    assert not right.yaxis.label.get_window_extent(r).overlaps(left.get_window_extent(r))
    assert not _small_texts(fig)


def test_fig3_threshold_labels_and_legends_clear(art, drawn):
    fig = figures.fig3_scores(art)
    r = drawn(fig)
    ax1, ax2 = fig.axes[:2]
    labels = [t for t in _texts(fig) if t.get_text().startswith("p = ") and t.get_color() == "red"]
    assert len(labels) == 3
    for ax in (ax1, ax2):
        legend = ax.get_legend().get_window_extent(r)
        assert not legend.overlaps(ax.patch.get_window_extent(r))  # outside the data area
        assert not [t for t in labels if t.get_window_extent(r).overlaps(legend)]
    assert not _overlapping([(t.get_text(), t.get_window_extent(r)) for t in labels])
    assert not _small_texts(fig)


def test_fig4_legend_clear_of_data_and_recall_label(art, drawn):
    fig = figures.fig4_bright_arcs(art)
    r = drawn(fig)
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(r)
    points = np.concatenate([ax.transData.transform(line.get_xydata()) for line in ax.lines if len(line.get_xdata())
                             and line.get_marker() not in (None, "None", "")])
    assert not [p for p in points if legend.contains(*p)]
    recall = next(t for t in ax.texts if t.get_text().startswith("Tier-A recall"))
    assert not recall.get_window_extent(r).overlaps(legend)
    hline = next(line for line in ax.lines if list(line.get_xdata()) == [0, 1])  # axhline: axes-fraction x
    y_recall = ax.transData.transform((0, hline.get_ydata()[0]))[1]
    assert not legend.y0 <= y_recall <= legend.y1  # the recall line passes clear of the legend
    assert not _small_texts(fig)


def test_fig5_layout_large_stamps_no_overlapping_text(art, drawn):
    fig, missing = gallery.comparison_figure(art)
    assert missing == []
    r = drawn(fig)
    stamps = [ax for ax in fig.axes if ax.images]
    assert len(stamps) == 16
    w, h = fig.get_size_inches()
    for ax in stamps:
        box = ax.get_position()
        assert box.width * w >= 1.5 and box.height * h >= 1.5  # inches
    texts = _texts(fig)
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts]
    assert not _overlapping(boxes)
    stamp_boxes = [ax.get_window_extent(r) for ax in stamps]
    assert not [(s, b) for s, b in boxes for sb in stamp_boxes if b.overlaps(sb)]
    assert all(fig.bbox.contains(b.x0, b.y0) and fig.bbox.contains(b.x1, b.y1) for _, b in boxes)
    headings = [t for t in texts if t.get_text()[:3] in ("(a)", "(b)")]
    assert len(headings) == 2
    assert not _small_texts(fig)
    # each heading lies above every stamp title of its section
    titles_a, titles_b = [ax.title.get_window_extent(r) for ax in stamps[:8]], [
        ax.title.get_window_extent(r) for ax in stamps[8:]]
    ha, hb = (t.get_window_extent(r) for t in headings)
    assert ha.y0 > max(b.y1 for b in titles_a) and hb.y0 > max(b.y1 for b in titles_b)
    assert hb.y1 < min(ax.get_window_extent(r).y0 for ax in stamps[:8])
    assert all("θ" in ax.get_title() or "theta" in ax.get_title() for ax in stamps[8:])


def test_priors_figure_has_density_axes(drawn):
    priors = InjectionPriors()
    fig = priors_figure(draw(7, 1.5, priors, n=300), priors)
    drawn(fig)
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == 9
    for ax in axes:
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert len(labels) >= 2
        assert ax.get_ylim()[0] == 0
    assert sum("density" in ax.get_ylabel() for ax in axes) == 3
