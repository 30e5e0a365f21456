"""Check a built book as a reader's browser sees it: every page loaded offline in headless Chromium.

:func:`check_book` serves the built HTML folder on ``127.0.0.1`` and opens every page in Chromium (Debian's
``chromium``, driven by Playwright). A page fails on

- a request to any address other than the local server (the book must read offline; the request is blocked),
- a resource that does not load (HTTP error, a blocked request, an image with no pixels),
- an internal link to a page or an anchor that does not exist,
- a Python traceback or any stderr output shown in the page,
- an absolute path of the build machine in the page's text,
- a JavaScript error.

A screenshot of each page is saved (``<screenshots>/<page path>.png``) for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

from lenslib import LenslibError
from lenslib._util import REPO_ROOT

#: folders of a Sphinx build that hold assets, not pages
SKIP_DIRS = ("_static", "_sources", "_images", "_sphinx_design_static", "_panels_static")
#: the text of a page must not show paths of the machine that built it
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:home|root|tmp|work|Users|private|var/folders|mnt|opt)/[\w.\-/]+")
#: references to the developers' specification (``shared/spec``), meaningless to a reader
INTERNAL_REFERENCE = re.compile(r"PAPER_SPEC[^\s,;)]*(?:\s+§?[A-Z]\.?\d*)?")
CHROMIUM_HINT = ("headless Chromium is needed: install Debian's chromium (`apt-get install chromium`) and the "
                 "Playwright driver (`pip install playwright`), or point LENSLIB_CHROMIUM at a Chromium binary")

_PAGE_JS = """async () => {
  const lazy = Array.from(document.images).filter(i => i.loading === 'lazy');
  lazy.forEach(i => { i.loading = 'eager'; });
  await Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)));
  const imgs = Array.from(document.images).map(i => ({src: i.currentSrc || i.src,
                                                  ok: i.complete && i.naturalWidth > 0}));
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));
  const sel = s => Array.from(document.querySelectorAll(s)).map(e => e.innerText.slice(0, 300));
  return {imgs, links, stderr: sel('.output.stderr, .stderr'), traceback: sel('.output.traceback, .output.error'),
          text: document.body ? document.body.innerText : ''};
}"""


class BookCheckFailed(LenslibError):
    """A page of the built book failed a check."""


class ChromiumMissing(BookCheckFailed):
    """Chromium or its driver is not installed."""


@dataclass
class PageReport:
    page: str
    problems: list[str] = field(default_factory=list)
    screenshot: str = ""
    n_images: int = 0
    n_links: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


@functools.lru_cache(maxsize=512)
def _anchors(path: Path) -> frozenset[str]:
    p = _Ids()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(p.ids)


def pages(html: Path) -> list[Path]:
    """Every HTML page of the build (assets, sources and Sphinx's generated index excluded)."""
    out = []
    for p in sorted(html.rglob("*.html")):
        rel = p.relative_to(html)
        if rel.parts[0] in SKIP_DIRS or rel.name == "genindex.html":
            continue
        out.append(p)
    return out


def link_problem(page: Path, href: str, html: Path, base_url: str) -> str | None:
    """Why an ``href`` of ``page`` is broken, or None. External links (other hosts, ``mailto:``) are not followed
    here: the book may link out; it may not load anything from outside."""
    if not href or href.startswith(("mailto:", "javascript:", "data:")):
        return None
    parts = urlsplit(href)
    if parts.scheme in ("http", "https") and not href.startswith(base_url):
        return None
    if href.startswith(base_url):
        href = "/" + href[len(base_url):].lstrip("/")
    target, frag = urldefrag(href)
    target = unquote(urlsplit(target).path)
    if not target:
        dest = page
    elif target.startswith("/"):
        dest = html / target.lstrip("/")
    else:
        dest = (page.parent / target).resolve()
    if dest.is_dir():
        dest = dest / "index.html"
    try:
        dest.resolve().relative_to(html.resolve())
    except ValueError:
        return f"link {href!r} points outside the book"
    if not dest.exists():
        return f"broken link {href!r}: {dest.relative_to(html.resolve()) if dest.is_absolute() else dest} missing"
    if frag and dest.suffix == ".html" and unquote(frag) not in _anchors(dest.resolve()):
        return f"broken link {href!r}: no anchor #{frag} in {dest.name}"
    return None


def text_problems(text: str, forbidden: tuple[str, ...] = ()) -> list[str]:
    """Absolute paths of the build machine (and any ``forbidden`` string) in a page's visible text."""
    out = []
    for s in forbidden:
        if s and s in text:
            out.append(f"the page shows the build path {s!r}")
    for m in sorted(set(ABSOLUTE_PATH.findall(text)))[:5]:
        out.append(f"the page shows an absolute path {m!r}")
    if "Traceback (most recent call last)" in text:
        out.append("the page shows a Python traceback")
    for m in sorted(set(INTERNAL_REFERENCE.findall(text)))[:3]:
        out.append(f"the page cites the developers' specification ({m!r}), which a reader does not have")
    return out


@contextmanager
def serve(html: Path) -> Iterator[str]:
    """Serve ``html`` on 127.0.0.1 (a free port) for the duration of the block; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def chromium_path() -> str:
    import os

    for cand in (os.environ.get("LENSLIB_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                 shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    raise ChromiumMissing(CHROMIUM_HINT)


#: Chromium draws a full-page screenshot taller than its texture limit with blank bands: longer pages are saved in
#: parts of at most this height (``<page>.png``, ``<page>-2.png``, ...)
SHOT_PART_PX = 12_000


def _screenshot(page, shot: Path, full_page: bool) -> Path:
    shot.parent.mkdir(parents=True, exist_ok=True)
    height = int(page.evaluate("() => document.documentElement.scrollHeight")) if full_page else 0
    if height <= SHOT_PART_PX:
        page.screenshot(path=str(shot), full_page=full_page)
        return shot
    width = int(page.evaluate("() => document.documentElement.scrollWidth"))
    for i, y in enumerate(range(0, height, SHOT_PART_PX)):
        part = shot if i == 0 else shot.with_name(f"{shot.stem}-{i + 1}.png")
        page.screenshot(path=str(part), full_page=True,
                        clip={"x": 0, "y": y, "width": width, "height": min(SHOT_PART_PX, height - y)})
    return shot


def check_book(html: Path, screenshots: Path | None = None, *, forbidden: tuple[str, ...] = (),
               width: int = 1280, height: int = 900, full_page: bool = True) -> list[PageReport]:
    """Load every page of the built book ``html`` in headless Chromium; return one report per page.

    ``forbidden``: strings that must not appear in any page's text (by default the repository's absolute path).
    Raises :class:`ChromiumMissing` when no browser is installed; does not raise on failing pages (see
    :func:`raise_on_problems`)."""
    html = Path(html).resolve()
    if not (html / "index.html").is_file():
        raise BookCheckFailed(f"{html}: not a built book (no index.html); build it with `python -m lenslib run`")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ChromiumMissing(CHROMIUM_HINT) from None
    exe = chromium_path()
    forbidden = tuple(forbidden) or (str(REPO_ROOT),)
    reports = []
    with serve(html) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
        state: dict[str, list[str]] = {"outside": [], "failed": [], "js": []}

        def route(r) -> None:
            url = r.request.url
            if url.startswith(base) or url.startswith("data:") or url.startswith("blob:"):
                r.continue_()
            else:
                state["outside"].append(url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("requestfailed", lambda req: state["failed"].append(f"{req.url} ({req.failure})")
                if req.url.startswith(base) else None)
        page.on("response", lambda resp: state["failed"].append(f"{resp.url} (HTTP {resp.status})")
                if resp.status >= 400 else None)
        page.on("pageerror", lambda err: state["js"].append(str(err)))
        for path in pages(html):
            rel = path.relative_to(html).as_posix()
            for v in state.values():
                v.clear()
            rep = PageReport(rel)
            try:
                page.goto(base + rel, wait_until="load", timeout=30_000)
                page.wait_for_load_state("networkidle", timeout=10_000)
            except Exception as exc:  # noqa: BLE001 - Playwright's timeouts and navigation errors
                rep.problems.append(f"the page did not load: {exc}")
                reports.append(rep)
                continue
            info = page.evaluate(_PAGE_JS)
            shown = unquote(urlsplit(page.url).path).lstrip("/")  # after a redirect (the root index.html)
            if shown != rel and (html / shown).is_file():
                path = html / shown
            rep.n_images, rep.n_links = len(info["imgs"]), len(info["links"])
            rep.problems += [f"request to a non-local address {u}" for u in sorted(set(state["outside"]))]
            rep.problems += [f"resource did not load: {u}" for u in sorted(set(state["failed"]))]
            rep.problems += [f"broken image {i['src']}" for i in info["imgs"] if not i["ok"]]
            rep.problems += [f"JavaScript error: {e}" for e in state["js"]]
            rep.problems += [f"stderr output in the page: {s!r}" for s in info["stderr"]]
            rep.problems += [f"error output in the page: {s!r}" for s in info["traceback"]]
            rep.problems += text_problems(info["text"], forbidden)
            for href in sorted(set(info["links"])):
                why = link_problem(path, href, html, base)
                if why:
                    rep.problems.append(why)
            if screenshots is not None:
                rep.screenshot = str(_screenshot(page, Path(screenshots) / (rel[: -len(".html")] + ".png"),
                                                 full_page))
            reports.append(rep)
        browser.close()
    return reports


def raise_on_problems(reports: list[PageReport], html: Path) -> None:
    bad = [r for r in reports if r.problems]
    if bad:
        lines = [f"{len(bad)} of {len(reports)} pages of {html} fail the browser check:"]
        for r in bad:
            lines.append(f"  {r.page}:")
            lines += [f"    - {p}" for p in r.problems[:12]]
            if len(r.problems) > 12:
                lines.append(f"    ... and {len(r.problems) - 12} more")
        raise BookCheckFailed("\n".join(lines))


def main(html: Path, screenshots: Path | None, log=print) -> int:
    t0 = time.perf_counter()
    reports = check_book(html, screenshots)
    n_bad = sum(bool(r.problems) for r in reports)
    for r in reports:
        log(f"{'FAIL' if r.problems else 'ok  '} {r.page} ({r.n_images} images, {r.n_links} links)")
        for p in r.problems:
            log(f"       - {p}")
    log(f"{len(reports)} pages, {n_bad} failing, {time.perf_counter() - t0:.1f} s"
        + (f"; screenshots in {screenshots}" if screenshots else ""))
    return 1 if n_bad else 0


if __name__ == "__main__":
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m lenslib.repro.bookcheck",
                                 description="Load every page of a built book in headless Chromium and check it.")
    ap.add_argument("html", type=Path, help="the built book's folder, e.g. _build/published")
    ap.add_argument("--screenshots", type=Path, default=None, help="save one full-page PNG per page here")
    args = ap.parse_args()
    try:
        sys.exit(main(args.html, args.screenshots))
    except BookCheckFailed as exc:
        sys.exit(f"bookcheck: {exc}")
