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
