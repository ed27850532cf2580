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


def _save_figure(fig, path: Path) -> Path:
    """Save a generated page's figure reproducibly (text stays text, no timestamp: same
    records, same file) and close it."""
    import matplotlib
    import matplotlib.pyplot as plt
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "effdl"}):
        fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return path


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
    return _save_figure(fig, path)


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


# ---------------------------------------------------------------- the survey map

#: The survey's five areas (Menghani, ACM CSUR 2023) with the key techniques it lists.
SURVEY_AREAS = {
    "Compression": "pruning, quantization, low-rank factorisation, weight sharing",
    "Learning techniques": "distillation, data augmentation, self-supervision",
    "Automation": "hyper-parameter optimisation, neural architecture search",
    "Efficient architectures": "depthwise-separable convolutions, efficient attention, "
                               "residual and embedding designs",
    "Infrastructure": "frameworks, compilers, memory and hardware, distribution",
}

#: Where each paper of the companion sits and what its chapter implements (the
#: verdicts come from the records, never from here).
MAP_PLACES = {
    "2106.08962": (("Compression", "Learning techniques", "Infrastructure"), "menghani2023survey",
                   "the guide's width-multiplier CNN: augmentation, distillation, int8, "
                   "pruning, low-rank"),
    "1911.05275": (("Learning techniques",), "menghani2019ood",
                   "blind distillation through out-of-distribution unlabeled data"),
    "2210.06711": (("Learning techniques",), "iliopoulos2022weighted",
                   "the distillation toolkit; per-example weights from teacher calibration"),
    "2302.03806": (("Learning techniques",), "kontonis2023slam",
                   "student-label mixing loss, both forms, against KD, WD and Taylor-CE"),
    "2210.01213": (("Learning techniques",), "baykal2023rad",
                   "which points to ask the teacher about: RAD's closed form, LP, DepRound"),
    "2411.07501": (("Efficient architectures",), "menghani2025laurel",
                   "learned augmented residuals (RW, LR, PA) in a small GPT and ResNet"),
    "2510.06502": (("Learning techniques",), "trinh2025guide",
                   "student initialised from the teacher's PCA-projected embeddings"),
    "2110.10357": (("Infrastructure",), "matani2021bitmap",
                   "a locality-keeping bitmap allocator in Cython against real allocators"),
    "2010.02286": (("Compression",), "laud2011genome",
                   "a Cython genome codec: DNAZip and its three improvements (beyond DL)"),
    "2010.02348": (("Infrastructure",), "menghani2010grid",
                   "the 2010 grid against Dask; the runner every chapter fans out with"),
}

#: Short names for the map's boxes.
MAP_SHORT = {"2106.08962": "03 survey guide", "1911.05275": "01 OOD distillation",
             "2210.06711": "04 weighted distill.", "2302.03806": "05 SLaM",
             "2210.01213": "06 active distill.", "2411.07501": "07 LAuReL",
             "2510.06502": "08 GUIDE", "2110.10357": "02 Fast Bitmap Fit",
             "2010.02286": "09 genome codec", "2010.02348": "10 grid / Dask"}

MAP_FIGURE = "_generated/survey_map.svg"


def _chapter_link(p: Paper, rec: dict | None, prefix: str = "../") -> str:
    if rec is not None:
        return f"[{rec['slug'][:2]} {_cell(rec.get('chapter', rec['slug']))}]({prefix}notebooks/{rec['slug']}.ipynb)"
    return "*planned*"


def _verdict_summary(rec: dict | None) -> str:
    if rec is None:
        return "-"
    counts = verdict_counts(rec)
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none checked"


def survey_map_figure(rows: list[dict], path: Path) -> Path:
    """Five columns, one per area, each paper a box in every area it sits in, coloured by
    its chapter's share of reproduced claims (grey: planned)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    areas = list(SURVEY_AREAS)
    placed = {a: [] for a in areas}
    for r in rows:
        place = MAP_PLACES.get(r["paper"].arxiv)
        for a in (place[0] if place else ()):
            placed[a].append(r)
    height = max(len(v) for v in placed.values())
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.75 * height))
    cmap = plt.get_cmap("RdYlGn")
    for i, a in enumerate(areas):
        ax.text(i + 0.5, height + 0.25, a.replace(" ", "\n", 1), ha="center", va="bottom",
                fontsize=9, fontweight="bold")
        if not placed[a]:
            ax.text(i + 0.5, height - 0.5, "none of the\nten papers", ha="center", va="center",
                    fontsize=8, color="#777777", fontstyle="italic")
        for j, r in enumerate(placed[a]):
            rec = r["record"]
            if rec is None:
                color, label = "#dddddd", "planned"
            else:
                counts = verdict_counts(rec)
                total = sum(counts.values()) or 1
                share = (counts["reproduced"] + 0.5 * counts["partly"]) / total
                color, label = cmap(0.15 + 0.7 * share), f"{counts['reproduced']}/{total} reproduced"
            y = height - 1 - j
            ax.add_patch(plt.Rectangle((i + 0.05, y + 0.08), 0.9, 0.84, color=color, ec="#666666"))
            title = MAP_SHORT.get(r["paper"].arxiv) or _short_title(r["paper"])[:22]
            ax.text(i + 0.5, y + 0.6, title, ha="center", va="center", fontsize=8)
            ax.text(i + 0.5, y + 0.3, label, ha="center", va="center", fontsize=7, color="#333333")
    ax.set_xlim(0, len(areas))
    ax.set_ylim(0, height + 0.9)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save_figure(fig, path)


def survey_map_page(records: list[dict], papers: list[Paper] | None = None,
                    book_dir: Path = BOOK, figure: bool = True) -> str:
    """``book/survey_map.md``: the survey's five areas, and for every paper of the
    companion where it sits, what its chapter implements and its verdicts (from the
    records); chapters not written yet appear as planned."""
    rows = rows_by_paper(records, papers if papers is not None else papers_from_readme())
    lines = ["# A map of the field", "",
             "<!-- Generated by `make book-html` (effdl_lib/book.py) from the records; do not edit. -->", "",
             "The survey {cite}`menghani2023survey` organises efficient deep learning into five "
             "areas and closes with a practitioner's guide and two strategies on the "
             "quality/footprint Pareto front: *Shrink-and-Improve* (cut capacity, recover quality "
             "with learning techniques, then compress) and *Grow-Improve-and-Shrink* (train "
             "bigger, improve, then compress back). Chapter 03 re-runs that guide. Every paper of "
             "this companion sits on the map below; the verdicts are read from the chapters' "
             "records.", ""]
    if figure:
        survey_map_figure(rows, Path(book_dir) / MAP_FIGURE)
        lines += [f"```{{figure}} {MAP_FIGURE}", ":name: fig-survey-map",
                  ":alt: Five columns, one per area of the survey, with a box per paper.", "",
                  "The companion's papers on the survey's five areas. Colour: share of the "
                  "chapter's claims reproduced (partly counts half), red to green; grey: "
                  "planned.", "```", ""]
    lines += ["## The five areas", "", "| area | key techniques (survey) | papers here |", "|---|---|---|"]
    for area, techniques in SURVEY_AREAS.items():
        here = [f"{_short_title(r['paper'])} {{cite}}`{MAP_PLACES[r['paper'].arxiv][1]}`"
                for r in rows if r["paper"].arxiv in MAP_PLACES
                and area in MAP_PLACES[r["paper"].arxiv][0]]
        lines.append(f"| {area} | {techniques} | {'; '.join(here) or 'none of the ten papers'} |")
    lines += ["", "## The chapters", "",
              "| paper | areas | what the chapter implements | chapter | claims by verdict |",
              "|---|---|---|---|---|"]
    for r in rows:
        p, rec = r["paper"], r["record"]
        areas, _, what = MAP_PLACES.get(p.arxiv, ((), "", ""))
        lines.append(f"| {_cell(p.title)} | {', '.join(areas) or '-'} | {_cell(what) or '-'} | "
                     f"{_chapter_link(p, rec)} | {_verdict_summary(rec)} |")
    lines += ["", "## How the distillation papers relate", "",
              "Five of the papers study one question from different sides: how to get the most "
              "out of a teacher when labels are scarce but unlabeled inputs are not.", "",
              "- *Which inputs?* OOD distillation shows that even inputs from another "
              "distribution carry the teacher's knowledge.",
              "- *How much to trust the teacher on each input?* Weighted distillation reweights "
              "the distillation loss; SLaM mixes the student's and the teacher's labels. Both "
              "share chapter 04's toolkit, splits and cached teacher.",
              "- *Which inputs to ask the teacher about?* Robust active distillation chooses them.",
              "- *Where to start the student?* GUIDE initialises it from the teacher."]
    return "\n".join(lines) + "\n"


# Generated pages: path under book/ -> function(records, papers, book_dir) -> markdown.
PAGES: dict[str, Callable[[list[dict], list[Paper], Path], str]] = {
    "record.md": record_page,
    "_generated/overview.md": overview_page,
    "survey_map.md": survey_map_page,
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
