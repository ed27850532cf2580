import json

import pytest

from effdl_lib import claims as cl
from effdl_lib.config import ConfigError, notebook_parameters
from effdl_lib.chapters.ood_distillation import Config
from effdl_lib.records import Record, claims_digest, record_page
from effdl_lib.stats import Estimate


def test_profiles_resolve_and_differ():
    smoke, cpu, gpu = (Config.resolve(p) for p in ("smoke", "cpu", "gpu"))
    assert smoke.seeds < cpu.seeds < gpu.seeds
    assert cpu.transfer_size < gpu.transfer_size


@pytest.mark.parametrize("profile, overrides, message", [
    ("huge", {}, "unknown profile 'huge'; choose one of: smoke, cpu, gpu"),
    ("cpu", {"tempreature": 2.0}, "unknown parameter 'tempreature'"),
    ("cpu", {"seeds": "three"}, "parameter 'seeds' must be int, got str 'three'"),
    ("cpu", {"seeds": True}, "must be int"),
    ("cpu", {"seeds": 0}, "seeds must be >= 1"),
    ("cpu", {"temperatures": 2.0}, "must be a list of float"),
    ("cpu", {"temperatures": [float("inf")]}, "temperatures must lie in"),
    ("cpu", {"lr": 5.0}, "lr must lie in"),
    ("cpu", {"sources": ["mnist", "lena"]}, "unknown sources ['lena']"),
])
def test_bad_parameters_fail_clearly(profile, overrides, message):
    with pytest.raises(ConfigError) as err:
        Config.resolve(profile, overrides)
    assert message in str(err.value)


def test_overrides_coerce_and_none_means_default():
    cfg = Config.resolve("cpu", {"temperatures": [1, 2], "seeds": None})
    assert cfg.temperatures == (1.0, 2.0) and all(isinstance(t, float) for t in cfg.temperatures)
    assert cfg.seeds == Config.resolve("cpu").seeds


def test_notebook_parameters_sees_injected_names():
    before = {"np", "pd"}
    ns = {"np": 1, "pd": 2, "profile": "cpu", "seeds": 5, "_hidden": 3}
    assert notebook_parameters(ns, before) == {"seeds": 5}


@pytest.mark.parametrize("est, verdict", [
    (Estimate(0.2, 0.1, 0.3, 3), cl.REPRODUCED),
    (Estimate(0.2, -0.1, 0.5, 3), cl.PARTLY),
    (Estimate(-0.2, -0.3, -0.1, 3), cl.NOT_REPRODUCED),
    (Estimate(0.2, 0.2, 0.2, 1), cl.NOT_TESTABLE),
    (None, cl.NOT_TESTABLE),
])
def test_rule_above_zero(est, verdict):
    assert cl.Rule(0.0).decide(est) == verdict


def test_rule_below_and_threshold():
    rule = cl.Rule(2.0, direction="below")
    assert rule.decide(Estimate(1.5, 1.2, 1.8, 5)) == cl.REPRODUCED
    assert rule.decide(Estimate(1.9, 1.5, 2.3, 5)) == cl.PARTLY
    assert rule.decide(Estimate(2.5, 2.1, 2.9, 5)) == cl.NOT_REPRODUCED
    with pytest.raises(ValueError):
        cl.Rule(0.0, direction="sideways")
    assert cl.Untestable("no data").decide(None) == cl.NOT_TESTABLE


def test_record_json_has_every_field(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDL_RECORD_DIR", str(tmp_path))
    rec = Record("99_demo", "Demo", "arXiv:0000.00000", "smoke", {"seeds": 2})
    claim = cl.Claim("demo-1", "x beats y", "accuracy difference", cl.Rule(0.0),
                     paper_value="1.5 points", paper_source="Table 2")
    rec.check(claim, Estimate(0.02, 0.01, 0.03, 2))
    with pytest.raises(ValueError):
        rec.check(claim, Estimate(0.02, 0.01, 0.03, 2))
    data = json.loads(rec.write().read_text())
    for key in ("chapter", "arxiv", "profile", "parameters", "start", "end", "duration_s",
                "environment", "claims"):
        assert key in data
    for key in ("python", "torch", "effdl_lib", "git_commit", "cpu", "threads", "gpu"):
        assert key in data["environment"]
    (c,) = data["claims"]
    assert c["measured"] == {"mean": 0.02, "ci_low": 0.01, "ci_high": 0.03, "n": 2}
    assert c["verdict"] == "reproduced" and c["paper_source"] == "Table 2"
    assert data["claims_digest"] == claims_digest(data["claims"])
    page = record_page([data])
    assert "**demo-1**" in page and "1.5 points (Table 2)" in page and "| 99_demo |" in page
