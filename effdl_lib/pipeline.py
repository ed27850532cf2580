"""Executes chapters and prepares the book.

    python -m effdl_lib.pipeline run notebooks/01_ood_distillation.py --profile cpu -p seeds 5
    python -m effdl_lib.pipeline book [--force] # re-run the stale chapters, sync prose
    python -m effdl_lib.pipeline smoke          # smoke copies of every record, for nbval
    python -m effdl_lib.pipeline record-page    # book/record.md from the record JSONs
    python -m effdl_lib.pipeline check          # notebooks and records in step with sources
    python -m effdl_lib.pipeline params-cell MODULE   # the parameters cell a chapter needs

``run`` converts the jupytext source to a notebook, executes it with papermill into
``build/staging/`` and only on success moves the executed notebook and its record JSON
into ``notebooks/``: a failed run never replaces the last good record.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .data import REPO_ROOT
from .records import claims_digest, load_records, record_page

NOTEBOOKS = REPO_ROOT / "notebooks"
BUILD = REPO_ROOT / "build"
KERNEL = "effdl"


def chapter_sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def _source_path(name: str) -> Path:
    candidates = [Path(name), NOTEBOOKS / name, NOTEBOOKS / f"{name}.py"]
    for c in candidates:
        if c.suffix == ".py" and c.exists():
            return c.resolve()
    known = ", ".join(p.stem for p in chapter_sources())
    raise SystemExit(f"no chapter source {name!r}; known chapters: {known}")


def _source_notebook(src: Path):
    import jupytext
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "effdl (venv)", "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def run(src: Path, profile: str, params: dict, out_dir: Path = NOTEBOOKS) -> int:
    import nbformat
    import papermill as pm

    stem = src.stem
    staging, failed = BUILD / "staging" / stem, BUILD / "failed"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    source_nb = staging / f"{stem}.source.ipynb"
    nbformat.write(_source_notebook(src), source_nb)
    executed = staging / f"{stem}.ipynb"
    os.environ["EFFDL_RECORD_DIR"] = str(staging)
    # Training bars would be frozen into the record; show papermill's cell bar instead.
    os.environ.setdefault("EFFDL_QUIET", "1")
    show_progress = sys.stderr.isatty() and not os.environ.get("CI")
    t0 = time.perf_counter()
    print(f"[{stem}] executing with profile={profile} {params or ''}", flush=True)
    try:
        pm.execute_notebook(str(source_nb), str(executed), parameters={"profile": profile, **params},
                            kernel_name=KERNEL, cwd=str(NOTEBOOKS), progress_bar=show_progress,
                            log_output=False)
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's error
        failed.mkdir(parents=True, exist_ok=True)
        trace = failed / f"{stem}.ipynb"
        if executed.exists():
            shutil.copy(executed, trace)
        summary = str(exc).strip().splitlines()
        print(f"\nCHAPTER FAILED: {stem} (profile={profile}) after {time.perf_counter() - t0:.0f} s\n"
              f"  {summary[-1] if summary else type(exc).__name__}\n"
              f"  traceback: {trace if trace.exists() else 'see the output above'}\n"
              f"  the last good record in {out_dir} is left as it was", file=sys.stderr)
        return 1
    record = staging / f"{stem}.record.json"
    if not record.exists():
        print(f"CHAPTER FAILED: {stem} wrote no record JSON (does it call record.write()?)",
              file=sys.stderr)
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)
    _strip_papermill_noise(executed)
    shutil.move(str(executed), out_dir / f"{stem}.ipynb")
    shutil.move(str(record), out_dir / f"{stem}.record.json")
    print(f"[{stem}] done in {time.perf_counter() - t0:.0f} s -> {out_dir / (stem + '.ipynb')}")
    return 0


def _strip_papermill_noise(path: Path) -> None:
    """Drop per-cell timestamps so a re-run changes only what the chapter computed."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def smoke(out_dir: Path = BUILD / "smoke") -> list[Path]:
    """Copies of the committed records re-parameterised to ``smoke``; nbval executes them
    and compares the cells marked NBVAL_CHECK_OUTPUT with the committed outputs."""
    import nbformat
    from papermill.parameterize import parameterize_notebook

    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    made = []
    for src in chapter_sources():
        executed = src.with_suffix(".ipynb")
        if not executed.exists():
            raise SystemExit(f"{executed} is missing: run `make chapter NB={src.stem}` first")
        nb = nbformat.read(executed, as_version=4)
        nb = parameterize_notebook(nb, {"profile": "smoke"}, kernel_name=KERNEL)
        target = out_dir / executed.name
        nbformat.write(nb, target)
        made.append(target)
    return made


#: cell metadata that only changes how the book shows a cell (tags such as hide-input,
#: myst-nb figure captions and names): copied over by sync_prose, no re-run needed.
DISPLAY_METADATA = ("tags", "mystnb")


def _display_metadata(meta: dict) -> dict:
    return {k: meta[k] for k in DISPLAY_METADATA if meta.get(k)}


def _executed_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"]
            if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def _module_of(src: Path):
    """The chapter module whose SLUG is this notebook's stem (None if there is none)."""
    import importlib
    import pkgutil

    from . import chapters
    for info in pkgutil.iter_modules(chapters.__path__):
        mod = importlib.import_module(f"{chapters.__name__}.{info.name}")
        if getattr(mod, "SLUG", None) == src.stem:
            return mod
    return None


@dataclass
class Staleness:
    """Why a chapter's committed record no longer matches the working tree."""
    chapter: str
    errors: list[str] = field(default_factory=list)    # make check fails; make book re-runs
    core: list[str] = field(default_factory=list)      # make check warns; make book re-runs
    prose: bool = False                                # markdown or tags differ: sync, no re-run

    @property
    def rerun(self) -> bool:
        return bool(self.errors or self.core)


def staleness(src: Path) -> Staleness:
    """Compare a chapter's committed notebook and record with its sources: code cells,
    input hashes (own module, toolkits, Cython, data, parameters), core hashes, rules."""
    import jupytext

    from . import data
    from .claims import rule_from_dict
    from .provenance import chapter_inputs, compare

    st = Staleness(src.stem)
    executed, record = src.with_suffix(".ipynb"), src.with_suffix(".record.json")
    if not executed.exists() or not record.exists():
        st.errors.append(f"missing {'notebook' if not executed.exists() else 'record'}")
        return st
    source_cells = jupytext.read(src).cells
    nb = json.loads(executed.read_text())
    have = _executed_cells(nb)
    from .provenance import python_code_hash
    # Code is compared through its AST: a comment edit in a code cell is synced like
    # prose, without a re-run.
    if [python_code_hash(c.source) for c in source_cells if c.cell_type == "code"] != \
            [python_code_hash("".join(c["source"])) for c in have if c["cell_type"] == "code"]:
        st.errors.append(f"the executed notebook's code differs from {src.name}")
    elif [(c.cell_type, c.source.strip(), _display_metadata(c.metadata)) for c in source_cells] != \
            [(c["cell_type"], "".join(c["source"]).strip(), _display_metadata(c.get("metadata", {})))
             for c in have]:
        st.prose = True
    rec = json.loads(record.read_text())
    if rec.get("claims_digest") != claims_digest(rec.get("claims", [])):
        st.errors.append("record claims were edited after the run")
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"]
                      for o in c.get("outputs", []) if o.get("name") == "stdout")
    if f"run {rec.get('run_id')}, profile {rec.get('profile')}" not in printed \
            or f"claims digest {rec.get('claims_digest')}" not in printed:
        st.errors.append("the record JSON is not the one this notebook's run wrote")
    if "inputs" not in rec:
        st.errors.append("the record predates input hashes (re-run it)")
        return st
    module = _module_of(src)
    if module is None:
        st.errors.append(f"no module in effdl_lib/chapters has SLUG = {src.stem!r}")
        return st
    params = module.Config.resolve("cpu").asdict() if rec.get("profile") == "cpu" else rec["parameters"]
    read = {k.split(":", 1)[1]: data.REGISTRY[k.split(":", 1)[1]].sha256
            if k.split(":", 1)[1] in data.REGISTRY else "gone"
            for k in rec["inputs"] if k.startswith("data:")}
    now = chapter_inputs(src, params, read)
    for key in compare(rec["inputs"], now["inputs"]):
        what = ("the cpu profile's parameters" if key == "parameters" else key)
        st.errors.append(f"input changed: {what}")
    st.core = compare(rec.get("core", {}), now["core"])
    stored = {c["id"]: c for c in rec["claims"]}
    if set(stored) != set(module.CLAIMS):
        st.errors.append(f"claims differ from CLAIMS: recorded {sorted(set(stored) - set(module.CLAIMS))} "
                         f"not in the library, {sorted(set(module.CLAIMS) - set(stored))} not recorded")
    for cid, claim in module.CLAIMS.items():
        if cid in stored and stored[cid].get("rule_spec") != claim.rule.as_dict():
            st.errors.append(f"rule of claim {cid!r} changed in the library")
        elif cid in stored and stored[cid]["verdict"] != \
                rule_from_dict(stored[cid]["rule_spec"]).decide(_estimate(stored[cid]["measured"])):
            st.errors.append(f"claim {cid!r}: stored verdict does not follow from its measurement")
    return st


def _estimate(measured: dict | None):
    from .stats import Estimate
    if measured is None:
        return None
    return Estimate(measured["mean"], measured["ci_low"], measured["ci_high"], measured["n"])


def freshness_problems() -> list[str]:
    """Errors that make ``make check`` fail, as "chapter: problem" lines."""
    problems = []
    for src in chapter_sources():
        st = staleness(src)
        problems += [f"{src.stem}: {e}" for e in st.errors]
        if st.prose:
            problems.append(f"{src.stem}: prose or cell tags differ from {src.name}; "
                            f"`make book` copies them over without re-running")
    return problems


def sync_prose(src: Path) -> None:
    """Copy markdown cells, code comments and cell tags from the source into the
    executed notebook (only when their code cells already agree up to comments): prose
    edits need no re-run."""
    import jupytext
    executed = src.with_suffix(".ipynb")
    nb = json.loads(executed.read_text())
    have = _executed_cells(nb)
    want = jupytext.read(src).cells
    if [c["cell_type"] for c in have] != [c.cell_type for c in want]:
        raise ValueError(f"{src.stem}: cells were added or removed; re-run the chapter")
    from .provenance import python_code_hash
    for old, new in zip(have, want):
        if old["cell_type"] == "markdown":
            old["source"] = new.source
        elif python_code_hash("".join(old["source"])) == python_code_hash(new.source):
            old["source"] = new.source
        else:
            raise ValueError(f"{src.stem}: a code cell changed; re-run the chapter")
        meta = old.setdefault("metadata", {})
        for key in DISPLAY_METADATA:
            meta.pop(key, None)
        meta.update(_display_metadata(new.metadata))
        meta.setdefault("tags", [])  # papermill looks the parameters cell up by its tags
    executed.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


#: Chapters whose claims time code on both cores (allocator walks, codec throughput,
#: int8 and pruning latency, Dask speed-ups, weighted distillation's time per step) or
#: that fan their own seeds out over both cores (LAuReL): ``make book`` runs them one at
#: a time after the others, so no other chapter competes with their timed sections.
RUNS_ALONE = ("02_bitmap_allocator", "03_survey_guide", "04_weighted_distillation",
              "07_laurel", "09_genome_codec", "10_grid")


def run_published(stem: str) -> int:
    """Execute one chapter as the published cpu record (a picklable task for the grid
    runner). Side by side with another chapter, its torch threads are capped at one and
    its own sweeps run in process; alone, they use every core."""
    return run(_source_path(stem), "cpu", {})


def _run_side_by_side(stem: str) -> int:
    # the cores are already shared with another chapter: one torch thread, and the
    # chapter's own seed sweeps stay in its process (same numbers, no extra processes)
    os.environ["EFFDL_MAX_THREADS"] = "1"
    os.environ["EFFDL_WORKERS"] = "1"
    return run_published(stem)


def last_duration(stem: str) -> float:
    """The committed record's ``duration_s`` (0 when there is none or it is unreadable):
    the book's runner starts the longest chapters first."""
    try:
        return float(json.loads((NOTEBOOKS / f"{stem}.record.json").read_text())["duration_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def book(force: bool = False, jobs: int = 2) -> int:
    """``make book``: re-run the chapters whose record is stale (or all with ``force``),
    say which and why, and copy prose-only edits without re-running. Stale chapters run
    ``jobs`` at a time through the grid runner (Dask), one torch thread each; those in
    :data:`RUNS_ALONE` run afterwards, one at a time, with the machine to themselves."""
    todo = []
    for src in chapter_sources():
        st = staleness(src)
        if force:
            todo.append(src.stem)
            print(f"[{src.stem}] re-run: FORCE")
        elif st.rerun:
            todo.append(src.stem)
            reasons = st.errors + [f"core changed: {c}" for c in st.core]
            print(f"[{src.stem}] re-run: " + "; ".join(reasons))
        elif st.prose:
            sync_prose(src)
            print(f"[{src.stem}] up to date; prose and tags copied from {src.name}")
        else:
            print(f"[{src.stem}] up to date")
    # longest first (LPT, by each record's last duration): the long chapters start at
    # once and the short ones fill the gaps, instead of one long chapter starting last
    together = sorted((s for s in todo if s not in RUNS_ALONE), key=lambda s: -last_duration(s))
    alone = [s for s in todo if s in RUNS_ALONE]
    t0 = time.perf_counter()
    statuses = {}
    if together and jobs > 1 and len(together) > 1:
        from .toolkits.grid import run_chapters
        print(f"running {len(together)} chapters, {jobs} at a time: {', '.join(together)}")
        table = run_chapters(_run_side_by_side, together, jobs=jobs)
        statuses.update(dict(zip(table["chapter"], table["status"])))
        chapter_s = float(table["seconds"].sum())
    else:
        alone = together + alone
        chapter_s = 0.0
    for stem in alone:
        t1 = time.perf_counter()
        statuses[stem] = run_published(stem)
        chapter_s += time.perf_counter() - t1
    failures = [s for s, status in statuses.items() if status != 0]
    if todo:
        # the serial time: the chapters' own times added up, as if run one after another
        print(f"chapters re-run in {time.perf_counter() - t0:.0f} s wall time; "
              f"{chapter_s:.0f} s one after another (sum of chapter times)")
    if failures:
        print(f"failed chapters: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


def write_record_page(target: Path = REPO_ROOT / "book" / "record.md") -> Path:
    target.write_text(record_page(load_records(NOTEBOOKS)))
    return target


def output_dir(profile: str, custom: bool) -> Path:
    """Only a plain cpu run is the published record (notebooks/); any other profile, or
    any -p parameter, goes to build/runs/PROFILE[-custom]/."""
    if profile == "cpu" and not custom:
        return NOTEBOOKS
    return BUILD / "runs" / (profile + ("-custom" if custom else ""))


def _parse_params(pairs: list[list[str]]) -> dict:
    # Values are YAML, as with papermill's -y: 5 -> int, 0.5 -> float, [1, 5] -> list.
    return {name: yaml.safe_load(value) for name, value in pairs or []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m effdl_lib.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute chapters with papermill")
    r.add_argument("chapters", nargs="*", help="sources (default: every notebooks/NN_*.py)")
    r.add_argument("--profile", default="cpu")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    r.add_argument("--out-dir", type=Path, default=None,
                   help="where the executed notebook and record go (default: notebooks/ for "
                        "the cpu profile without -p, the published record; build/runs/... otherwise)")
    sub.add_parser("smoke", help="write smoke-profile copies of every record to build/smoke")
    sub.add_parser("record-page", help="write book/record.md from the record JSONs")
    sub.add_parser("check", help="fail if a notebook or record is stale")
    b = sub.add_parser("book", help="re-run stale chapters (all with --force), sync prose")
    b.add_argument("--force", action="store_true")
    b.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "2")),
                   help="chapters run side by side (default: $JOBS or 2)")
    pc = sub.add_parser("params-cell", help="print the parameters cell a chapter module needs")
    pc.add_argument("module", help="e.g. ood_distillation")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        sources = [_source_path(c) for c in args.chapters] or chapter_sources()
        out = args.out_dir or output_dir(args.profile, bool(args.param))
        failures = [s.stem for s in sources if run(s, args.profile, _parse_params(args.param), out)]
        if failures:
            print(f"failed chapters: {', '.join(failures)}", file=sys.stderr)
        return 1 if failures else 0
    if args.cmd == "smoke":
        for p in smoke():
            print(p.relative_to(REPO_ROOT))
        return 0
    if args.cmd == "record-page":
        print(write_record_page().relative_to(REPO_ROOT))
        return 0
    if args.cmd == "book":
        if args.jobs < 1:
            ap.error(f"--jobs must be at least 1, got {args.jobs}")
        return book(args.force, args.jobs)
    if args.cmd == "params-cell":
        import importlib
        from .chapter import parameters_cell
        print(parameters_cell(importlib.import_module(f"effdl_lib.chapters.{args.module}")))
        return 0
    problems = freshness_problems()
    for src in chapter_sources():
        core = staleness(src).core
        if core:
            print(f"warning: {src.stem}: core changed since its record ({', '.join(core)}); "
                  f"`make book` re-runs it", file=sys.stderr)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
