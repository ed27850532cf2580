"""Executes chapters and prepares the book.

    python -m effdl_lib.pipeline run notebooks/01_ood_distillation.py --profile cpu -p seeds 5
    python -m effdl_lib.pipeline smoke          # smoke copies of every record, for nbval
    python -m effdl_lib.pipeline record-page    # book/record.md from the record JSONs
    python -m effdl_lib.pipeline check          # notebooks and records in step with sources

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


def freshness_problems() -> list[str]:
    """Each committed notebook's code equals its source, and its record is from that run."""
    import jupytext

    problems = []
    for src in chapter_sources():
        executed, record = src.with_suffix(".ipynb"), src.with_suffix(".record.json")
        if not executed.exists() or not record.exists():
            problems.append(f"{src.stem}: missing {'notebook' if not executed.exists() else 'record'}")
            continue
        want = [c.source.strip() for c in jupytext.read(src).cells if c.cell_type == "code"]
        nb = json.loads(executed.read_text())
        have = ["".join(c["source"]).strip() for c in nb["cells"] if c["cell_type"] == "code"
                and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
        if want != have:
            problems.append(f"{src.stem}: the executed notebook's code differs from {src.name}")
        rec = json.loads(record.read_text())
        if rec["claims_digest"] != claims_digest(rec["claims"]):
            problems.append(f"{src.stem}: record claims were edited after the run")
        printed = "".join("".join(o.get("text", "")) for c in nb["cells"]
                          for o in c.get("outputs", []) if o.get("name") == "stdout")
        marker = f"run {rec['run_id']}, profile {rec['profile']}"
        if marker not in printed or f"claims digest {rec['claims_digest']}" not in printed:
            problems.append(f"{src.stem}: the record JSON is not the one this notebook's run wrote")
    return problems


def write_record_page(target: Path = REPO_ROOT / "book" / "record.md") -> Path:
    target.write_text(record_page(load_records(NOTEBOOKS)))
    return target


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
    args = ap.parse_args(argv)
    if args.cmd == "run":
        sources = [_source_path(c) for c in args.chapters] or chapter_sources()
        # Only a plain cpu run is the published record; anything else goes to build/runs.
        published = args.profile == "cpu" and not args.param
        out = args.out_dir or (NOTEBOOKS if published else
                               BUILD / "runs" / (args.profile + ("" if not args.param else "-custom")))
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
    problems = freshness_problems()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
