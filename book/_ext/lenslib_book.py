"""Sphinx extension of the lenslib book (``_config.yml``: ``sphinx: local_extensions``).

- A banner on every page says which profile built this book (``LENSLIB_BOOK_BANNER``, set by
  ``lenslib.repro.runner.build_book``).
- Each page loads every script once: sphinx-thebe registers its configuration script twice under jupyter-book 1,
  which redeclares ``const THEBE_JS_URL`` and raises a JavaScript error on every page.
- The book's stylesheet (``_static/lenslib.css``: wide tables scroll, the paper-vs-run tables, the gallery).
"""

from __future__ import annotations

import os


def _banner(app, config) -> None:
    text = os.environ.get("LENSLIB_BOOK_BANNER")
    if text:
        opts = dict(config.html_theme_options or {})
        opts["announcement"] = text
        config.html_theme_options = opts


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, out = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        # an inline script is registered once with filename None and once with "": the same script
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key in seen:
            continue
        seen.add(key)
        out.append(js)
    scripts[:] = out


def setup(app):
    app.connect("config-inited", _banner)
    app.connect("html-page-context", _dedupe_scripts, priority=1)  # first: emit_firstresult stops at a result
    app.add_css_file("lenslib.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
