"""Records tied to their code: hashes that see code but not comments, dependency
discovery, and staleness detection on the committed chapters."""
import dataclasses
import json

import pytest

from effdl_lib import pipeline, provenance as pv
from effdl_lib.claims import Rule


def test_python_hash_ignores_comments_docstrings_and_layout():
    a = 'def f(x):\n    """Docstring."""\n    return x + 1  # why\n'
    b = "def f(x):\n\n    # a different comment\n    return (x +\n            1)\n"
    assert pv.python_code_hash(a) == pv.python_code_hash(b)
    assert pv.python_code_hash(a) != pv.python_code_hash(a.replace("x + 1", "x + 2"))
    assert pv.python_code_hash("THRESHOLD = 0.5\n") != pv.python_code_hash("THRESHOLD = 0.6\n")


def test_text_hash_ignores_c_and_cython_comments():
    c1 = "int f(int x) {\n  /* block\n comment */ return x; // why\n}\n"
    c2 = "int f(int x) {\n   return x;\n\n}\n"
    assert pv.text_code_hash(c1, "//", ("/*", "*/")) == pv.text_code_hash(c2, "//", ("/*", "*/"))
    assert pv.text_code_hash("cdef int n = 1  # n\n", "#") == pv.text_code_hash("cdef int n = 1\n", "#")
    assert pv.text_code_hash("cdef int n = 1\n", "#") != pv.text_code_hash("cdef int n = 2\n", "#")


def test_dependencies_of_a_notebook_follow_imports(tmp_path):
    src = tmp_path / "97_demo.py"
    src.write_text("# %%\nfrom effdl_lib.chapters import ood_distillation as ood\n"
                   "from effdl_lib.chapter import start\n")
    deps = {str(p.relative_to(pv.REPO_ROOT)) for p in pv.dependencies(src)}
    assert {"effdl_lib/chapters/ood_distillation.py", "effdl_lib/toolkits/distill.py",
            "effdl_lib/chapter.py", "effdl_lib/stats.py", "effdl_lib/training.py"} <= deps
    assert not any("bitmap" in d for d in deps)
    # presentation-only core modules never make a record stale
    assert "effdl_lib/book.py" not in deps and "effdl_lib/pipeline.py" not in deps
    hashes = pv.chapter_inputs(src, {"seeds": 3}, {"mnist/test-images": "ab" * 32})
    assert "effdl_lib/chapters/ood_distillation.py" in hashes["inputs"]
    assert "effdl_lib/toolkits/distill.py" in hashes["inputs"]
    assert "effdl_lib/stats.py" in hashes["core"] and "effdl_lib/stats.py" not in hashes["inputs"]
    assert hashes["inputs"]["data:mnist/test-images"] == "ab" * 8
    assert pv.compare(hashes["inputs"], {**hashes["inputs"], "parameters": "x"}) == ["parameters"]


def test_cython_sources_follow_headers_and_cimports(tmp_path, monkeypatch):
    ext = tmp_path / "cython_ext"
    ext.mkdir()
    (ext / "demo.pyx").write_text('cdef extern from "demo.h":\n    int f(int)\nfrom other cimport g\n')
    (ext / "demo.h").write_text('#include "inner.h"\nint f(int x);\n')
    (ext / "inner.h").write_text("/* nothing */\n")
    (ext / "other.pxd").write_text("cdef int g(int)\n")
    (ext / "unused.h").write_text("\n")
    monkeypatch.setattr(pv, "CYTHON", ext)
    assert [p.name for p in pv._cython_sources("demo")] == ["demo.h", "demo.pyx", "inner.h", "other.pxd"]


def _fresh_chapters():
    fresh = []
    for src in pipeline.chapter_sources():
        st = pipeline.staleness(src)
        if not st.errors:
            fresh.append((src, pipeline._module_of(src)))
    return fresh


def test_a_changed_rule_threshold_makes_the_record_stale(monkeypatch):
    chapters = _fresh_chapters()
    if not chapters:
        pytest.skip("no chapter has a fresh record (test_pipeline reports why)")
    for src, module in chapters:
        cid, claim = next((k, c) for k, c in module.CLAIMS.items() if isinstance(c.rule, Rule))
        moved = dataclasses.replace(claim, rule=dataclasses.replace(claim.rule,
                                                                    threshold=claim.rule.threshold + 0.01))
        monkeypatch.setitem(module.CLAIMS, cid, moved)
        errors = pipeline.staleness(src).errors
        assert f"rule of claim {cid!r} changed in the library" in errors, src.stem
        monkeypatch.setitem(module.CLAIMS, cid, claim)
        assert not pipeline.staleness(src).errors


def test_a_changed_module_line_names_the_chapter_and_the_input(monkeypatch):
    chapters = _fresh_chapters()
    if not chapters:
        pytest.skip("no chapter has a fresh record (test_pipeline reports why)")
    real = pv.file_hash
    for src, module in chapters:
        own = f"effdl_lib/chapters/{module.__name__.rsplit('.', 1)[1]}.py"
        monkeypatch.setattr(pv, "file_hash", lambda p: "changed" if str(p).endswith(own) else real(p))
        errors = pipeline.staleness(src).errors
        assert f"input changed: {own}" in errors
        problems = pipeline.freshness_problems()
        assert f"{src.stem}: input changed: {own}" in problems
        monkeypatch.setattr(pv, "file_hash", real)


def test_a_core_change_is_a_warning_that_re_runs(monkeypatch):
    chapters = _fresh_chapters()
    if not chapters:
        pytest.skip("no chapter has a fresh record (test_pipeline reports why)")
    real = pv.file_hash
    before = {src: pipeline.staleness(src).core for src, _ in chapters}
    monkeypatch.setattr(pv, "file_hash", lambda p: "changed" if str(p).endswith("effdl_lib/stats.py") else real(p))
    for src, _ in chapters:
        st = pipeline.staleness(src)
        assert st.core == sorted(set(before[src]) | {"effdl_lib/stats.py"})
        assert not st.errors and st.rerun
