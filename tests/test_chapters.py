"""One check suite over every chapter module and its committed record (the shared
checks, as scikit-learn runs one suite over every estimator)."""
import ast
import importlib
import json
import pkgutil

import pytest

from effdl_lib import chapters, pipeline
from effdl_lib.chapter import check_chapter, parameters_cell
from effdl_lib.claims import Rule, rule_from_dict
from effdl_lib.stats import Estimate, recompute

MODULES = [importlib.import_module(f"effdl_lib.chapters.{m.name}")
           for m in pkgutil.iter_modules(chapters.__path__)]
CHAPTERS = [m for m in MODULES if hasattr(m, "SLUG")]


def _ids(mods):
    return [m.__name__.rsplit(".", 1)[1] for m in mods]


def test_every_chapter_module_has_a_notebook_and_every_notebook_a_module():
    slugs = {m.SLUG for m in CHAPTERS}
    sources = {p.stem for p in pipeline.chapter_sources()}
    assert slugs == sources


@pytest.mark.parametrize("module", CHAPTERS, ids=_ids(CHAPTERS))
def test_check_chapter(module):
    assert check_chapter(module) == []


@pytest.mark.parametrize("module", CHAPTERS, ids=_ids(CHAPTERS))
def test_parameters_cell_declares_every_field(module):
    """papermill --help-notebook lists every parameter and -p NAME draws no warning."""
    import jupytext
    src = pipeline.NOTEBOOKS / f"{module.SLUG}.py"
    cells = [c for c in jupytext.read(src).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one parameters cell"
    assigned = {t.id: getattr(n.value, "value", "?") for n in ast.parse(cells[0].source).body
                if isinstance(n, ast.Assign) for t in n.targets}
    want = {line.split(" = ")[0] for line in parameters_cell(module).splitlines()}
    assert set(assigned) == want
    assert assigned.pop("profile") == "cpu" and all(v is None for v in assigned.values())


@pytest.mark.parametrize("module", CHAPTERS, ids=_ids(CHAPTERS))
def test_committed_verdicts_follow_from_samples_and_rules(module):
    """Recompute every estimate from the samples kept in the record and decide its
    verdict again with the library's rule."""
    rec_path = pipeline.NOTEBOOKS / f"{module.SLUG}.record.json"
    rec = json.loads(rec_path.read_text())
    assert {c["id"] for c in rec["claims"]} == set(module.CLAIMS)
    for c in rec["claims"]:
        rule = module.CLAIMS[c["id"]].rule
        assert rule_from_dict(c["rule_spec"]) == rule
        m = c["measured"]
        if m is None:
            assert rule.decide(None) == c["verdict"]
            continue
        if "samples" in m:
            again = recompute(m)
            assert again.mean == pytest.approx(m["mean"], rel=1e-9, abs=1e-12), c["id"]
            assert again.ci_low == pytest.approx(m["ci_low"], rel=1e-9, abs=1e-12), c["id"]
            assert again.ci_high == pytest.approx(m["ci_high"], rel=1e-9, abs=1e-12), c["id"]
        else:  # a hand-built estimate: allowed only in records of the first format
            assert "inputs" not in rec, f"{c['id']}: the estimate kept no samples; build it " \
                "with effdl_lib.stats (mean_ci, paired_diff, bootstrap_ratio, point)"
            again = Estimate(m["mean"], m["ci_low"], m["ci_high"], m["n"])
        assert rule.decide(again) == c["verdict"], c["id"]


@pytest.mark.parametrize("module", CHAPTERS, ids=_ids(CHAPTERS))
def test_figure_cells_show_only_their_figure(module):
    """myst-nb gives a cell's figure name to every output of the cell: a figure cell that
    also returns a table breaks the book build with a duplicate target."""
    import jupytext
    for cell in jupytext.read(pipeline.NOTEBOOKS / f"{module.SLUG}.py").cells:
        if cell.cell_type == "code" and "figure" in cell.metadata.get("mystnb", {}):
            last = ast.parse(cell.source).body[-1]
            returns_value = isinstance(last, ast.Expr) and not (
                isinstance(last.value, ast.Call) and ast.unparse(last.value.func) in ("plt.show", "print", "glue"))
            assert not returns_value, f"{cell.metadata['mystnb']['figure'].get('name')}: move " \
                f"'{ast.unparse(last)[:60]}' to its own cell"
