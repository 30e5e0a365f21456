"""The browser check itself: each kind of defect in a small site is found by a real headless Chromium, and a clean
site passes (the built books are checked in the end-to-end tests)."""

from __future__ import annotations

import base64
import os
import shutil

import pytest

from lenslib.repro import bookcheck as B

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
                       "AAAABJRU5ErkJggg==")


def _page(body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>t</title></head><body>{body}</body></html>"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "html"
    (root / "book" / "executed").mkdir(parents=True)
    (root / "_static").mkdir()
    (root / "img.png").write_bytes(PNG)
    (root / "index.html").write_text(_page('<h1 id="top">Book</h1><a href="book/executed/good.html#s">ok</a>'
                                           '<img src="img.png" alt="fine">'))
    (root / "book" / "executed" / "good.html").write_text(_page('<h2 id="s">S</h2><a href="../../index.html#top">up'
                                                                 '</a><a href="https://example.org/">out</a>'))
    (root / "_static" / "asset.html").write_text(_page('<img src="nothing.png">'))  # assets are not pages
    return root


def _need_chromium():
    try:
        import playwright  # noqa: F401

        B.chromium_path()
    except (ImportError, B.ChromiumMissing):
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium and Playwright (.ci/run installs them)")
        pytest.skip("no Chromium or Playwright here")


def test_links_and_anchors_are_resolved_against_the_built_files(site):
    page = site / "index.html"
    base = "http://127.0.0.1:1/"
    assert B.link_problem(page, "book/executed/good.html#s", site, base) is None
    assert "no anchor #nope" in B.link_problem(page, "book/executed/good.html#nope", site, base)
    assert "missing" in B.link_problem(page, "book/executed/absent.html", site, base)
    assert "outside the book" in B.link_problem(page, "../../etc/passwd", site, base)
    assert B.link_problem(page, "https://example.org/x", site, base) is None  # a link out is allowed
    assert B.link_problem(page, base + "book/executed/good.html", site, base) is None
    assert B.link_problem(page, "#top", site, base) is None
    assert B.pages(site) == [site / "book" / "executed" / "good.html", site / "index.html"]


def test_page_text_may_not_show_paths_tracebacks_or_the_developers_spec():
    assert B.text_problems("figures saved under runs/demo/figures and s3://bucket/key") == []
    assert any("/home/ci/x/runs" in p for p in B.text_problems("see /home/ci/x/runs/demo"))
    assert any("build path" in p for p in B.text_problems("at /srv/repo/lenslib", forbidden=("/srv/repo",)))
    assert any("traceback" in p for p in B.text_problems("Traceback (most recent call last):\n  File"))
    assert any("specification" in p for p in B.text_problems("as in PAPER_SPEC §E.6"))


def test_a_clean_site_passes_in_chromium_with_a_screenshot_per_page(site, tmp_path):
    _need_chromium()
    reports = B.check_book(site, tmp_path / "shots", forbidden=("/nonexistent-root",))
    assert [r.page for r in reports] == ["book/executed/good.html", "index.html"]
    assert all(not r.problems for r in reports), [r.problems for r in reports]
    for r in reports:
        assert open(r.screenshot, "rb").read(4) == b"\x89PNG"
    B.raise_on_problems(reports, site)  # does not raise


def test_each_defect_of_a_page_is_found_in_chromium(site, tmp_path):
    _need_chromium()
    bad = site / "book" / "executed" / "bad.html"
    bad.write_text(_page(
        '<img src="missing.png" alt="gone">'                                       # broken image
        '<img src="https://cdn.example.org/x.png" alt="remote">'                    # a request to another host
        '<a href="good.html#nowhere">anchor</a><a href="absent.html">page</a>'       # broken internal links
        '<div class="output stderr">UserWarning: something</div>'                  # stderr shown in the page
        "<pre>Traceback (most recent call last):\n  File x</pre>"                  # a Python traceback
        "<p>written to /home/ci/build/runs/demo/figures/f.png</p>"                  # a build machine's path
        "<script>undefinedFunction();</script>"))                                   # a JavaScript error
    reports = {r.page: r for r in B.check_book(site, None, forbidden=("/nonexistent-root",))}
    problems = "\n".join(reports["book/executed/bad.html"].problems)
    for expected in ("broken image", "missing.png", "non-local address https://cdn.example.org/x.png",
                     "no anchor #nowhere", "absent.html", "stderr output", "Python traceback",
                     "/home/ci/build/runs/demo/figures/f.png", "JavaScript error"):
        assert expected in problems, (expected, problems)
    assert not reports["index.html"].problems
    with pytest.raises(B.BookCheckFailed, match="1 of 3 pages"):
        B.raise_on_problems(list(reports.values()), site)


def test_a_folder_without_a_book_and_a_missing_browser_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(B.BookCheckFailed, match="not a built book"):
        B.check_book(tmp_path)
    monkeypatch.setenv("LENSLIB_CHROMIUM", str(tmp_path / "no-such-chromium"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(B.ChromiumMissing, match="apt-get install chromium"):
        B.chromium_path()
