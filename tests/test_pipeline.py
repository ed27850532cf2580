import json

import pytest

from effdl_lib import pipeline
from effdl_lib.claims import VERDICTS


def test_every_chapter_record_is_fresh():
    """The committed .ipynb runs the code of its .py source, its record JSON is the one
    that run wrote, and the record's input hashes and rules match the working tree."""
    assert pipeline.chapter_sources(), "no chapters found"
    assert pipeline.freshness_problems() == []


def test_records_have_the_required_fields():
    for src in pipeline.chapter_sources():
        rec = json.loads(src.with_suffix(".record.json").read_text())
        assert rec["profile"] == "cpu", f"{src.stem}: the committed record must be the cpu run"
        assert rec["inputs"] and "parameters" in rec["inputs"]
        for c in rec["claims"]:
            assert set(c) >= {"id", "claim", "origin", "paper_value", "metric", "rule",
                              "rule_spec", "measured", "verdict"}
            assert c["origin"]["kind"] in ("paper", "related", "ours")
            assert c["verdict"] in VERDICTS


def test_param_parsing_is_typed():
    got = pipeline._parse_params([["seeds", "5"], ["lr", "0.01"], ["k_shots", "[1, 5]"],
                                  ["sources", "[mnist, noise]"]])
    assert got == {"seeds": 5, "lr": 0.01, "k_shots": [1, 5], "sources": ["mnist", "noise"]}


def test_only_a_plain_cpu_run_writes_to_notebooks():
    assert pipeline.output_dir("cpu", custom=False) == pipeline.NOTEBOOKS
    for profile, custom in (("cpu", True), ("smoke", False), ("gpu", False), ("gpu", True)):
        out = pipeline.output_dir(profile, custom)
        assert out != pipeline.NOTEBOOKS and pipeline.BUILD / "runs" in out.parents
    assert pipeline.output_dir("cpu", True).name == "cpu-custom"


def test_unknown_chapter_name_lists_the_known_ones():
    with pytest.raises(SystemExit) as err:
        pipeline._source_path("99_nonexistent")
    assert "no chapter source '99_nonexistent'" in str(err.value)
    assert "01_ood_distillation" in str(err.value)


def test_failed_chapter_keeps_last_record(tmp_path, monkeypatch):
    src = tmp_path / "98_broken.py"
    src.write_text("# %%\nraise RuntimeError('boom')\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "98_broken.record.json").write_text('{"good": true}')
    monkeypatch.setattr(pipeline, "BUILD", tmp_path / "build")
    monkeypatch.setattr(pipeline, "NOTEBOOKS", tmp_path)
    assert pipeline.run(src, "smoke", {}, out_dir=out) == 1
    assert json.loads((out / "98_broken.record.json").read_text()) == {"good": True}
    assert (tmp_path / "build" / "failed" / "98_broken.ipynb").exists()


def test_book_runs_stale_chapters_side_by_side_and_timing_chapters_alone(monkeypatch, capsys, tmp_path):
    import pandas as pd
    from effdl_lib.toolkits import grid
    stems = ["01_a", "02_bitmap_allocator", "04_b", "05_c"]
    monkeypatch.setattr(pipeline, "chapter_sources", lambda: [tmp_path / f"{s}.py" for s in stems])
    stale = {"01_a": pipeline.Staleness("01_a", errors=["input changed: x.py"]),
             "02_bitmap_allocator": pipeline.Staleness("02", core=["effdl_lib/stats.py"]),
             "04_b": pipeline.Staleness("04_b"),
             "05_c": pipeline.Staleness("05_c", errors=["missing record"])}
    monkeypatch.setattr(pipeline, "staleness", lambda src: stale[src.stem])
    calls = {"together": None, "alone": []}

    def fake_run_chapters(fn, chapters, jobs):
        calls["together"] = (list(chapters), jobs, fn)
        return pd.DataFrame({"chapter": chapters, "status": [0, 1][:len(chapters)],
                             "seconds": [1.0, 2.0][:len(chapters)]})

    monkeypatch.setattr(grid, "run_chapters", fake_run_chapters)
    monkeypatch.setattr(pipeline, "run_published", lambda stem: calls["alone"].append(stem) or 0)
    assert pipeline.book(jobs=2) == 1                     # 05_c failed in the runner
    assert calls["together"][:2] == (["01_a", "05_c"], 2)
    assert calls["together"][2] is pipeline._run_side_by_side
    assert calls["alone"] == ["02_bitmap_allocator"]      # a timing chapter, after the others
    out = capsys.readouterr()
    assert "[01_a] re-run: input changed: x.py" in out.out
    assert "[02_bitmap_allocator] re-run: core changed: effdl_lib/stats.py" in out.out
    assert "[04_b] up to date" in out.out and "failed chapters: 05_c" in out.err
    calls["alone"].clear()
    assert pipeline.book(jobs=1) == 0 and calls["alone"] == ["01_a", "05_c", "02_bitmap_allocator"]
    # side by side, the longest chapter (by its last record) starts first
    monkeypatch.setattr(pipeline, "last_duration", {"01_a": 10.0, "05_c": 300.0}.get)
    pipeline.book(jobs=2)
    assert calls["together"][0] == ["05_c", "01_a"]


def test_last_duration_reads_the_record_and_defaults_to_zero(monkeypatch, tmp_path):
    import json
    monkeypatch.setattr(pipeline, "NOTEBOOKS", tmp_path)
    (tmp_path / "01_a.record.json").write_text(json.dumps({"duration_s": 251.5}))
    (tmp_path / "02_b.record.json").write_text("{not json")
    assert pipeline.last_duration("01_a") == 251.5
    assert pipeline.last_duration("02_b") == 0.0 and pipeline.last_duration("03_c") == 0.0


def test_threads_are_an_execution_setting_capped_side_by_side(monkeypatch):
    from effdl_lib import provenance, runtime
    assert provenance.parameters_hash({"seeds": 3, "threads": 2}) == \
        provenance.parameters_hash({"seeds": 3, "threads": 1})
    assert provenance.parameters_hash({"seeds": 3}) != provenance.parameters_hash({"seeds": 4})
    monkeypatch.setenv("EFFDL_MAX_THREADS", "1")
    assert runtime.setup(threads=2).threads == 1
    monkeypatch.delenv("EFFDL_MAX_THREADS")
    assert runtime.setup(threads=2).threads == 2
    import torch
    torch.set_num_threads(1)


def test_a_comment_in_a_code_cell_is_synced_without_a_re_run(tmp_path, monkeypatch):
    import nbformat
    src = tmp_path / "97_demo.py"
    src.write_text('# %% [markdown]\n# Prose.\n\n# %% tags=["parameters"]\nx = 1\n\n# %%\ny = x + 1  # why\n')
    import jupytext
    nb = jupytext.read(src)
    executed = tmp_path / "97_demo.ipynb"
    nbformat.write(nb, executed)
    (tmp_path / "97_demo.record.json").write_text("{}")
    monkeypatch.setattr(pipeline, "_module_of", lambda s: None)
    assert not pipeline.staleness(src).prose
    src.write_text(src.read_text().replace("# why", "# because").replace("Prose.", "New prose."))
    st = pipeline.staleness(src)
    assert st.prose and not any("code differs" in e for e in st.errors)
    pipeline.sync_prose(src)
    st = pipeline.staleness(src)
    assert not st.prose
    cells = json.loads(executed.read_text())["cells"]
    assert "# because" in "".join(cells[2]["source"]) and "New prose." in "".join(cells[0]["source"])
    assert all("tags" in c["metadata"] for c in cells)
    src.write_text(src.read_text().replace("x + 1", "x + 2"))
    assert any("code differs" in e for e in pipeline.staleness(src).errors)
    with pytest.raises(ValueError, match="a code cell changed"):
        pipeline.sync_prose(src)
