import json

from effdl_lib import pipeline


def test_every_chapter_record_is_fresh():
    """The committed .ipynb runs the code of its .py source, and its record JSON is the
    one that run wrote (run id and claims digest printed in the notebook)."""
    assert pipeline.chapter_sources(), "no chapters found"
    assert pipeline.freshness_problems() == []


def test_records_have_the_required_fields():
    for src in pipeline.chapter_sources():
        rec = json.loads(src.with_suffix(".record.json").read_text())
        assert rec["profile"] == "cpu", f"{src.stem}: the committed record must be the cpu run"
        for c in rec["claims"]:
            assert set(c) >= {"id", "claim", "paper_value", "paper_source", "metric", "rule",
                              "measured", "verdict"}
            assert c["verdict"] in ("reproduced", "partly", "not reproduced",
                                    "not testable at this scale")


def test_param_parsing_is_typed():
    got = pipeline._parse_params([["seeds", "5"], ["lr", "0.01"], ["k_shots", "[1, 5]"],
                                  ["sources", "[mnist, noise]"]])
    assert got == {"seeds": 5, "lr": 0.01, "k_shots": [1, 5], "sources": ["mnist", "noise"]}


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
