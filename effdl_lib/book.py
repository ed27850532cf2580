"""The book's generated pages, written from the record JSONs that executed chapters leave.

    python -m effdl_lib.pipeline record-page     # calls write_pages()

Each generated page is one function ``records, papers -> markdown`` listed in
:data:`PAGES` under the path it is written to (relative to ``book/``); add a page by
adding an entry. Pages written today:

- ``record.md``: every claim of every executed chapter, the runs and their parameters;
- ``_generated/overview.md`` (included by ``intro.md``): one row per paper of the
  README's table, its claims counted by verdict as a figure and a table, and its
  headline finding; papers without an executed chapter are shown as planned;
- ``_generated/claims/<slug>.md`` (per chapter, :data:`CHAPTER_PAGES`): the chapter's
  claims at a glance, for a chapter to include near its top.

Records are read as plain dicts and every field beyond ``slug``, ``claims`` and each
claim's ``id``/``verdict`` is optional, so older and newer record layouts both render
(``paper_value`` may be null; ``origin`` = ``{"kind", "where"}`` replaces
``paper_source``; ``inputs`` and ``headline`` are used where present).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .data import REPO_ROOT

BOOK = REPO_ROOT / "book"
README = REPO_ROOT / "README.md"
NOT_AVAILABLE = "not available"
VERDICTS = ("reproduced", "partly", "not reproduced", "not testable at this scale")
# Colour-blind-safe (Okabe-Ito) colours, one per verdict, in VERDICTS order.
VERDICT_COLORS = ("#009E73", "#E69F00", "#D55E00", "#999999")


# ---------------------------------------------------------------- reading

def load_records(folder: Path) -> list[dict]:
    """Every ``*.record.json`` in ``folder``, sorted by file name (the chapter number)."""
    out = []
    for p in sorted(Path(folder).glob("*.record.json")):
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not valid JSON ({exc}); re-run its chapter") from exc
        if not isinstance(rec, dict) or "claims" not in rec:
            raise ValueError(f"{p}: not a chapter record (no 'claims')")
        rec.setdefault("slug", p.name[: -len(".record.json")])
        out.append(rec)
    return out


@dataclass(frozen=True)
class Paper:
    """One row of the README's paper table."""
    arxiv: str          # bare id, e.g. "1911.05275"
    title: str          # markdown, as in the README
    chapter: str        # "notebooks/01_ood_distillation" or "" when planned
    survey_map: bool = False   # placed on the survey map page (the survey itself)


def arxiv_id(text: str) -> str:
    """'arXiv:1911.05275', 'https://arxiv.org/abs/1911.05275v2' -> '1911.05275'."""
    m = re.search(r"(\d{4}\.\d{4,5})", text or "")
    return m.group(1) if m else (text or "").strip()


def papers_from_readme(path: Path = README) -> list[Paper]:
    """The ten papers of the README's table (| arXiv | paper | chapter |), in order."""
    papers = []
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.search(r"\d{4}\.\d{4,5}", cells[0]):
            continue
        chapter = re.search(r"`(notebooks/[^`]+)`", cells[2])
        papers.append(Paper(arxiv_id(cells[0]), cells[1], chapter.group(1) if chapter else "",
                            "survey map" in cells[2].lower()))
    return papers


# ---------------------------------------------------------------- formatting

def _cell(text) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_measured(m: dict | None) -> str:
    """'mean [low, high] (n)' of a claim's measurement, as the table and the page show it."""
    if m is None or m.get("mean") is None:
        return "-"
    if m.get("n", 0) < 2 or m.get("ci_low") is None:
        return f"{m['mean']:.3g} ({m.get('n', 1)})"
    return f"{m['mean']:.3g} [{m['ci_low']:.3g}, {m['ci_high']:.3g}] ({m['n']})"


def claim_origin(c: dict) -> tuple[str, str]:
    """(kind, where) of a claim: the new ``origin`` field, else the old ``paper_source``."""
    origin = c.get("origin")
    if isinstance(origin, dict):
        return origin.get("kind") or "paper", origin.get("where") or ""
    source = c.get("paper_source") or ""
    return "paper", "" if source == NOT_AVAILABLE else source


ORIGIN_KINDS = {"paper": "the paper", "related": "related work",
                "ours": "this companion's hypothesis"}


def format_origin(c: dict) -> str:
    """Where a claim comes from: 'the paper: Table 2', 'related work: Hinton et al. 2015',
    "this companion's hypothesis: why"."""
    kind, where = claim_origin(c)
    return ORIGIN_KINDS.get(kind, kind) + (f": {where}" if where else "")


def format_paper_value(c: dict) -> str:
    """The paper's number for a claim, or 'not available' (``paper_value`` null or absent)."""
    value = c.get("paper_value")
    return NOT_AVAILABLE if value is None or value == "" else str(value)


def format_paper(c: dict) -> str:
    """The paper's value and where it comes from: '1.5 points (Table 2)'."""
    text = format_paper_value(c)
    kind, where = claim_origin(c)
    label = {"related": f"related work: {where}" if where else "related work",
             "ours": f"our hypothesis: {where}" if where else "our hypothesis"}.get(kind, where)
    return text + (f" ({label})" if label else "")


def verdict_counts(rec: dict) -> dict[str, int]:
    counts = {v: 0 for v in VERDICTS}
    for c in rec.get("claims", []):
        counts[c.get("verdict", VERDICTS[-1])] = counts.get(c.get("verdict", VERDICTS[-1]), 0) + 1
    return counts


def _shorten(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: text.rfind(" ", 0, limit)].rstrip(",;:") + " ..."


def headline(rec: dict) -> str:
    """The record's own ``headline`` where it has one; else its first claim (chapters list
    their main claim first) with its verdict."""
    if rec.get("headline"):
        return str(rec["headline"])
    claims = rec.get("claims") or []
    if not claims:
        return "no claims checked"
    first = claims[0]
    return f"{_shorten(first.get('claim', first['id']))} *({first.get('verdict', '?')})*"


# ---------------------------------------------------------------- pages

def record_page(records: list[dict], papers: list[Paper] | None = None,
                book_dir: Path = BOOK) -> str:
    """Markdown for book/record.md: every claim, environment, seeds and run times."""
    lines = ["# Reproduction record", "",
             "Generated by `make book` from the record JSONs that each executed chapter "
             "writes beside its notebook (`notebooks/NN_slug.record.json`). Do not edit by "
             "hand. Measured values are means with 95% intervals: Student-t over paired seeds for "
             "differences, percentile bootstrap over paired repeats for ratios (timings).", ""]
    if not records:
        return "\n".join(lines + ["No chapter has been executed yet."]) + "\n"
    lines += ["## Every claim", "",
              "| chapter | claim | paper | ours: mean [95% CI] (n) | verdict |",
              "|---|---|---|---|---|"]
    for rec in records:
        for c in rec["claims"]:
            lines.append(f"| {rec['slug']} | **{c['id']}**: {_cell(c.get('claim', ''))} | "
                         f"{_cell(format_paper(c))} | {format_measured(c.get('measured'))} | "
                         f"{c.get('verdict', '-')} |")
    lines += ["", "## Runs", "",
              "| chapter | arXiv | profile | seeds | start (UTC) | duration (s) | threads | "
              "CPU | GPU | torch | commit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        env, par = rec.get("environment", {}), rec.get("parameters", {})
        lines.append(f"| {rec['slug']} | {rec.get('arxiv', '-')} | {rec.get('profile', '-')} | "
                     f"{par.get('seeds', '-')} | {rec.get('start', '-')} | "
                     f"{rec.get('duration_s', '-')} | {env.get('threads', '-')} | "
                     f"{_cell(env.get('cpu', '-'))} | {env.get('gpu') or '-'} | "
                     f"{env.get('torch', '-')} | `{str(env.get('git_commit', '-'))[:12]}` |")
    lines += ["", "## Parameters", ""]
    for rec in records:
        params = ", ".join(f"`{k}={v}`" for k, v in rec.get("parameters", {}).items())
        lines += [f"- **{rec['slug']}** ({rec.get('profile', '-')}): {params}"]
    if any(rec.get("inputs") for rec in records):
        lines += ["", "## Inputs", ""]
        for rec in records:
            if rec.get("inputs"):
                lines += [f"- **{rec['slug']}**: {_cell(_inputs_text(rec['inputs']))}"]
    return "\n".join(lines) + "\n"


def _inputs_text(inputs) -> str:
    if isinstance(inputs, dict):
        return ", ".join(f"`{k}`: {_short_value(v)}" for k, v in inputs.items())
    if isinstance(inputs, list):
        return ", ".join(_short_value(v) for v in inputs)
    return str(inputs)


def _short_value(v) -> str:
    if isinstance(v, dict):
        name = v.get("name") or v.get("path") or v.get("file")
        digest = v.get("sha256") or v.get("digest")
        if name:
            return f"`{name}`" + (f" (sha256 {str(digest)[:12]})" if digest else "")
        return json.dumps(v, sort_keys=True)
    return f"`{v}`" if isinstance(v, str) else str(v)


def rows_by_paper(records: list[dict], papers: list[Paper]) -> list[dict]:
    """One row per paper in the README's order: its record (or None when planned), plus any
    record whose paper is not in the table, at the end."""
    by_arxiv = {arxiv_id(r.get("arxiv", "")): r for r in records}
    rows, used = [], set()
    for p in papers:
        rec = by_arxiv.get(p.arxiv)
        if rec is None and p.chapter:   # listed with a chapter but no record: match by slug
            rec = next((r for r in records if r["slug"] == Path(p.chapter).name), None)
        if rec is not None:
            used.add(id(rec))
        rows.append({"paper": p, "record": rec})
    for rec in records:
        if id(rec) not in used:
            rows.append({"paper": Paper(arxiv_id(rec.get("arxiv", "")), rec.get("chapter", rec["slug"]),
                                        f"notebooks/{rec['slug']}"), "record": rec})
    return rows


def _short_title(p: Paper) -> str:
    m = re.search(r"\*([^*]+)\*", p.title)
    return _shorten(m.group(1) if m else p.title, 38)


def verdict_figure(rows: list[dict], path: Path) -> Path:
    """Horizontal stacked bars: per paper, its claims by verdict; planned papers marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_short_title(r["paper"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.4))
    left = [0] * len(rows)
    for verdict, color in zip(VERDICTS, VERDICT_COLORS):
        widths = [verdict_counts(r["record"])[verdict] if r["record"] else 0 for r in rows]
        ax.barh(labels, widths, left=left, color=color, label=verdict, edgecolor="white")
        left = [a + b for a, b in zip(left, widths)]
    for i, r in enumerate(rows):
        if r["record"] is None:
            ax.text(0.1, i, "planned", va="center", ha="left", color="#555555", fontstyle="italic",
                    fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("claims checked (count)")
    ax.set_ylabel("paper")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlim(0, max(left + [1]) + 0.5)
    ax.legend(title="verdict", loc="upper center", bbox_to_anchor=(0.5, -0.9 / (0.42 * len(rows) + 1.4)),
              ncol=2, fontsize=8, title_fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Text stays text (small, sharp, searchable); no timestamp: same records, same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "effdl"}):
        fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return path


FIGURE = "_generated/verdicts.svg"


def overview_page(records: list[dict], papers: list[Paper] | None = None,
                  book_dir: Path = BOOK, figure: bool = True) -> str:
    """Markdown for the landing page's verdict overview, included by ``intro.md`` (paths
    relative to ``book_dir``); draws the figure into ``book_dir/_generated/``."""
    rows = rows_by_paper(records, papers if papers is not None else papers_from_readme())
    done = [r for r in rows if r["record"]]
    n_claims = sum(len(r["record"]["claims"]) for r in done)
    lines = ["## Where the reproductions stand", "",
             f"{len(done)} of {len(rows)} papers have an executed chapter, with {n_claims} "
             "claims checked; the others are planned. Generated from the chapters' record "
             "JSONs by `make book-html`.", ""]
    if figure:
        verdict_figure(rows, Path(book_dir) / FIGURE)
        lines += [f"```{{figure}} {FIGURE}", ":name: fig-verdicts",
                  ":alt: Stacked bars, one per paper, counting its claims by verdict.", "",
                  "Claims per paper, by verdict. A claim is *reproduced* when our 95 % interval "
                  "meets the rule fixed before the run, *partly* when only the mean does; "
                  "papers without a chapter yet are marked *planned*.", "```", ""]
    lines += ["| paper | chapter | claims by verdict | headline finding |", "|---|---|---|---|"]
    for r in rows:
        p, rec = r["paper"], r["record"]
        arxiv = f" [arXiv:{p.arxiv}](https://arxiv.org/abs/{p.arxiv})" if re.match(r"\d{4}\.", p.arxiv) else ""
        paper = _cell(p.title) + arxiv
        if rec is None:
            where = "[survey map](survey_map.md); chapter *planned*" if p.survey_map else "*planned*"
            lines.append(f"| {paper} | {where} | - | - |")
            continue
        counts = verdict_counts(rec)
        link = f"[{_cell(rec.get('chapter', rec['slug']))}](../notebooks/{rec['slug']}.ipynb)"
        by_verdict = "<br>".join(f"{n} {v}" for v, n in counts.items() if n) or "none checked"
        lines.append(f"| {paper} | {link} | {by_verdict} | {_cell(headline(rec))} |")
    return "\n".join(lines) + "\n"


def claim_target(claim_id: str) -> str:
    """The MyST target a chapter puts above the cell that measures a claim:
    ``(claim-<id>)=``; the chapter's claim summary then links to it."""
    return "claim-" + re.sub(r"[^a-z0-9]+", "-", claim_id.lower()).strip("-")


def claims_summary(rec: dict, source_text: str = "") -> str:
    """A chapter's claims at a glance, for the top of its page: each claim, the paper's
    value, ours and the verdict; a claim links down to ``(claim-<id>)=`` where the
    chapter's source defines that target. Include it from a markdown cell:

        ```{include} ../book/_generated/claims/01_ood_distillation.md
        ```
    """
    lines = ["| claim | paper | ours: mean [95% CI] (n) | verdict |", "|---|---|---|---|"]
    for c in rec.get("claims", []):
        target = claim_target(c["id"])
        cid = (f"{{ref}}`{c['id']} <{target}>`" if f"({target})=" in source_text
               else f"**{c['id']}**")
        lines.append(f"| {cid}: {_cell(_shorten(c.get('claim', ''), 200))} | "
                     f"{_cell(format_paper(c))} | {format_measured(c.get('measured'))} | "
                     f"{c.get('verdict', '-')} |")
    counts = ", ".join(f"{n} {v}" for v, n in verdict_counts(rec).items() if n)
    return (f"**Claims at a glance** ({counts}; profile `{rec.get('profile', '-')}`, "
            f"run `{rec.get('run_id', '-')}`):\n\n" + "\n".join(lines) + "\n")


# Generated pages: path under book/ -> function(records, papers, book_dir) -> markdown.
PAGES: dict[str, Callable[[list[dict], list[Paper], Path], str]] = {
    "record.md": record_page,
    "_generated/overview.md": overview_page,
}
# One page per chapter record: path pattern under book/ -> function(record, source text).
CHAPTER_PAGES: dict[str, Callable[[dict, str], str]] = {
    "_generated/claims/{slug}.md": claims_summary,
}


def write_pages(records_dir: Path, book_dir: Path = BOOK, readme: Path = README) -> list[Path]:
    """Write every page of :data:`PAGES`; a page whose text is unchanged is not touched
    (Sphinx then does not rebuild it)."""
    records, papers = load_records(records_dir), papers_from_readme(readme)
    written = []
    jobs = [(rel, lambda make=make: make(records, papers, Path(book_dir)))
            for rel, make in PAGES.items()]
    for rec in records:
        src = Path(records_dir) / f"{rec['slug']}.py"
        text = src.read_text() if src.exists() else ""
        jobs += [(pattern.format(slug=rec["slug"]), lambda make=make, rec=rec, text=text: make(rec, text))
                 for pattern, make in CHAPTER_PAGES.items()]
    for rel, make_text in jobs:
        target = Path(book_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = make_text()
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m effdl_lib.book",
                                 description="write the book's generated pages from the records")
    ap.add_argument("--records", type=Path, default=REPO_ROOT / "notebooks")
    ap.add_argument("--book", type=Path, default=BOOK)
    args = ap.parse_args(argv)
    for p in write_pages(args.records, args.book):
        print(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
