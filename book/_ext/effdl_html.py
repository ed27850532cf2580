"""Two fixes to the book's HTML that configuration alone cannot make.

- papermill's injected-parameters cell (it repeats the parameters cell with the values of
  the run) is dropped from every chapter page, and so from the search index too;
- inline scripts that Sphinx 7.4 emits twice are emitted once: an extension that adds a
  body-only script after the builder starts (sphinx-thebe's ``const THEBE_JS_URL``,
  togglebutton's selector) gets it both from the registry (filename ``''``) and from the
  builder (filename ``None``), and the second ``const`` is a SyntaxError in the console.
"""
from __future__ import annotations

from docutils import nodes

HIDDEN_TAGS = {"tag_injected-parameters"}


def drop_injected_parameters(app, doctree: nodes.document) -> None:
    for node in list(doctree.findall(nodes.container)):
        if HIDDEN_TAGS & set(node.get("classes", [])) and "cell" in node.get("classes", []):
            node.parent.remove(node)


def dedupe_inline_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        body = js.attributes.get("body") if not js.filename else None
        if body is not None:
            if body in seen:
                continue
            seen.add(body)
        kept.append(js)
    scripts[:] = kept


def setup(app):
    app.connect("doctree-read", drop_injected_parameters)
    app.connect("html-page-context", dedupe_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
