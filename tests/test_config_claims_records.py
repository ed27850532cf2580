import dataclasses
import json
import types
from typing import ClassVar

import pytest

from effdl_lib import claims as cl
from effdl_lib.config import ChapterConfig, ConfigError, NonEmpty, OneOf, Range, notebook_parameters, require
from effdl_lib.records import Record, claims_digest, record_page
from effdl_lib.stats import Estimate, mean_ci


@dataclasses.dataclass(frozen=True)
class Demo(ChapterConfig):
    seeds: int
    lr: float = 1e-3
    temperatures: tuple[float, ...] = (1.0, 2.0)
    sources: tuple[str, ...] = ("a",)
    cap: int | None = None
    balance: bool = False

    CONSTRAINTS: ClassVar[dict] = {"seeds": Range(1, 50), "lr": Range(0, 1, lo_open=True),
                                   "temperatures": Range(0, 100, lo_open=True),
                                   "sources": OneOf(("a", "b")), "cap": Range(1)}

    @classmethod
    def profiles(cls):
        return {"smoke": cls(seeds=2), "cpu": cls(seeds=3, threads=2), "gpu": cls(seeds=5, device="auto")}

    def validate(self):
        require(self.seeds >= len(self.sources), "need at least one seed per source")


def test_profiles_resolve_and_base_fields():
    smoke, cpu, gpu = (Demo.resolve(p) for p in ("smoke", "cpu", "gpu"))
    assert (smoke.seeds, cpu.seeds, gpu.seeds) == (2, 3, 5)
    assert (smoke.threads, cpu.threads, gpu.device) == (1, 2, "auto")


@pytest.mark.parametrize("profile, overrides, message", [
    ("huge", {}, "unknown profile 'huge'; choose one of: smoke, cpu, gpu"),
    ("cpu", {"sedes": 2}, "unknown parameter 'sedes' for Demo; valid parameters: profile, threads, device, seeds"),
    ("cpu", {"seeds": "three"}, "parameter 'seeds' must be int, got str 'three'"),
    ("cpu", {"seeds": True}, "must be int"),
    ("cpu", {"seeds": 0}, "parameter 'seeds' must be [1, 50], got 0"),
    ("cpu", {"seeds": 51}, "must be [1, 50]"),
    ("cpu", {"lr": 0.0}, "parameter 'lr' must be (0, 1], got 0.0"),
    ("cpu", {"lr": float("nan")}, "parameter 'lr' must be"),
    ("cpu", {"temperatures": 2.0}, "must be a list of float"),
    ("cpu", {"temperatures": [1.0, float("inf")]}, "parameter 'temperatures' must be (0, 100]"),
    ("cpu", {"sources": ["a", "lena"]}, "parameter 'sources' must be one of a, b, got ('a', 'lena')"),
    ("cpu", {"cap": 0}, "parameter 'cap' must be [1, inf)"),
    ("cpu", {"cap": "x"}, "parameter 'cap' must be int"),
    ("cpu", {"device": "tpu"}, "parameter 'device' must be one of cpu, cuda, auto"),
    ("cpu", {"threads": 0}, "parameter 'threads' must be [1, 256]"),
    ("smoke", {"sources": ["a", "b", "a"]}, "need at least one seed per source"),
])
def test_bad_parameters_fail_clearly(profile, overrides, message):
    with pytest.raises(ConfigError) as err:
        Demo.resolve(profile, overrides)
    assert message in str(err.value)


def test_overrides_coerce_optional_and_none_means_profile_value():
    cfg = Demo.resolve("cpu", {"temperatures": [1, 2], "seeds": None, "cap": 7})
    assert cfg.temperatures == (1.0, 2.0) and all(isinstance(t, float) for t in cfg.temperatures)
    assert cfg.seeds == 3 and cfg.cap == 7
    assert Demo.resolve("cpu").cap is None


def test_unknown_annotation_does_not_pass_unchecked():
    @dataclasses.dataclass(frozen=True)
    class Odd(ChapterConfig):
        table: dict = dataclasses.field(default_factory=dict)

        @classmethod
        def profiles(cls):
            return {"cpu": cls()}

    with pytest.raises(TypeError, match="unsupported annotation"):
        Odd.resolve("cpu")


def test_constraint_on_a_missing_field_is_an_error():
    @dataclasses.dataclass(frozen=True)
    class Typo(ChapterConfig):
        seeds: int = 1
        CONSTRAINTS: ClassVar[dict] = {"sedes": Range(1)}

        @classmethod
        def profiles(cls):
            return {"cpu": cls()}

    with pytest.raises(TypeError, match="unknown fields"):
        Typo.resolve("cpu")


def test_non_empty_and_describe():
    assert not NonEmpty().ok(()) and NonEmpty().ok((1,))
    described = Demo.describe()
    assert described["seeds"] == "int [1, 50]" and described["sources"].endswith("one of a, b")
    assert list(described)[:3] == ["threads", "device", "seeds"]


def test_notebook_parameters_sees_injected_names():
    before = {"np", "pd"}
    ns = {"np": 1, "pd": 2, "profile": "cpu", "seeds": 5, "_hidden": 3}
    assert notebook_parameters(ns, before) == {"seeds": 5}


@pytest.mark.parametrize("est, verdict", [
    (Estimate(0.2, 0.1, 0.3, 3), cl.REPRODUCED),
    (Estimate(0.2, -0.1, 0.5, 3), cl.PARTLY),
    (Estimate(-0.2, -0.3, -0.1, 3), cl.NOT_REPRODUCED),
    (Estimate(0.0, -0.1, 0.1, 3), cl.NOT_REPRODUCED),  # the mean on the threshold is not above it
    (Estimate(0.2, 0.2, 0.2, 1), cl.NOT_TESTABLE),
    (None, cl.NOT_TESTABLE),
])
def test_rule_above_zero(est, verdict):
    assert cl.Rule(0.0).decide(est) == verdict


def test_rule_below_threshold_min_n_and_round_trip():
    rule = cl.Rule(2.0, direction="below", min_n=5)
    assert rule.decide(Estimate(1.5, 1.2, 1.8, 5)) == cl.REPRODUCED
    assert rule.decide(Estimate(1.9, 1.5, 2.3, 5)) == cl.PARTLY
    assert rule.decide(Estimate(2.5, 2.1, 2.9, 5)) == cl.NOT_REPRODUCED
    assert rule.decide(Estimate(1.5, 1.2, 1.8, 4)) == cl.NOT_TESTABLE
    assert cl.rule_from_dict(rule.as_dict()) == rule
    why = cl.Untestable("no data offline")
    assert cl.rule_from_dict(why.as_dict()) == why
    # an untestable claim stays untestable even with a decisive estimate
    assert why.decide(Estimate(5.0, 4.0, 6.0, 30)) == cl.NOT_TESTABLE
    with pytest.raises(ValueError):
        cl.Rule(0.0, direction="sideways")
    with pytest.raises(ValueError):
        cl.rule_from_dict({"kind": "vibes"})


def test_origins():
    assert cl.paper("Table 2").text == "the paper: Table 2"
    assert cl.related("Kulkarni et al. 2017").text.startswith("related work")
    assert cl.ours().text == "this companion's hypothesis"
    with pytest.raises(ValueError, match="must say where"):
        cl.paper("")
    with pytest.raises(ValueError, match="origin kind"):
        cl.Origin("rumour", "x")
    with pytest.raises(TypeError, match="origin must be"):
        cl.Claim("x", "x", "m", cl.Rule(), origin="Table 2")


def test_catalog_rejects_duplicates_and_measurements_must_match():
    a = cl.Claim("a", "a holds", "m", cl.Rule(), origin=cl.ours())
    b = cl.Claim("b", "b holds", "m", cl.Rule(), origin=cl.paper("Fig. 1"), paper_value="3x")
    table = cl.claims_catalog(a, b)
    assert list(table) == ["a", "b"]
    with pytest.raises(ValueError, match="declared twice"):
        cl.claims_catalog(a, a)
    with pytest.raises(KeyError, match=r"missing \['b'\], unknown \['c'\]"):
        cl.match_measurements(table, {"a": cl.Measurement(None), "c": cl.Measurement(None)})
    with pytest.raises(TypeError, match="must be a Measurement"):
        cl.match_measurements(table, {"a": cl.Measurement(None), "b": 0.5})


def _demo_module():
    return types.SimpleNamespace(
        SLUG="99_demo", TITLE="Demo", ARXIV="0000.00000",
        CLAIMS=cl.claims_catalog(
            cl.Claim("demo-1", "x beats y", "accuracy difference", cl.Rule(0.0),
                     origin=cl.paper("Table 2"), paper_value="1.5 points"),
            cl.Claim("demo-2", "z is untestable", "-", cl.Untestable("no data"), origin=cl.ours())))


def test_record_json_has_every_field(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDL_RECORD_DIR", str(tmp_path))
    rec = Record(_demo_module(), "smoke", {"seeds": 2})
    monkeypatch.setattr(rec, "source", tmp_path / "99_demo.py")
    (tmp_path / "99_demo.py").write_text("# %%\nfrom effdl_lib import stats\nx = 1\n")
    with pytest.raises(ValueError, match="no claim was checked"):
        rec.write()
    rec.check_all({"demo-1": cl.Measurement(mean_ci([0.02, 0.03]), "a note"),
                   "demo-2": cl.Measurement(None)})
    with pytest.raises(ValueError, match="already called"):
        rec.check_all({})
    data = json.loads(rec.write().read_text())
    for key in ("chapter", "arxiv", "profile", "parameters", "start", "end", "duration_s",
                "environment", "claims", "inputs", "core"):
        assert key in data
    for key in ("python", "torch", "effdl_lib", "git_commit", "cpu", "threads", "gpu",
                "load_avg_start", "load_avg_end"):
        assert key in data["environment"]
    assert "effdl_lib/stats.py" in data["core"] and "parameters" in data["inputs"]
    c1, c2 = data["claims"]
    assert c1["measured"]["samples"] == [0.02, 0.03] and c1["measured"]["method"] == "t"
    assert c1["origin"] == {"kind": "paper", "where": "Table 2"} and c1["note"] == "a note"
    assert c1["rule_spec"] == {"kind": "rule", "threshold": 0.0, "direction": "above", "min_n": 2}
    assert c2["verdict"] == cl.NOT_TESTABLE and c2["paper_value"] is None
    assert data["claims_digest"] == claims_digest(data["claims"])
    page = record_page([data])
    assert "demo-1" in page and "1.5 points" in page and "Table 2" in page


@pytest.mark.parametrize("est, verdict", [
    (Estimate(1.32, 1.23, 1.43, 5), cl.REPRODUCED),      # clears the threshold and the margin
    (Estimate(1.15, 0.95, 1.40, 5), cl.PARTLY),          # mean past 1.1, CI reaches 1
    (Estimate(1.05, 1.01, 1.09, 5), cl.NOT_REPRODUCED),  # significant but smaller than the margin
    (Estimate(0.97, 0.90, 1.04, 5), cl.NOT_REPRODUCED),
    (Estimate(1.10, 1.05, 1.15, 5), cl.NOT_REPRODUCED),  # the mean on the bar is not past it
])
def test_rule_margin_above(est, verdict):
    assert cl.Rule(1.0, margin=0.1).decide(est) == verdict


def test_rule_margin_below_text_and_round_trip():
    rule = cl.Rule(1.0, direction="below", margin=0.1)
    assert rule.bar == pytest.approx(0.9)
    assert rule.decide(Estimate(0.8, 0.7, 0.88, 4)) == cl.REPRODUCED
    assert rule.decide(Estimate(0.85, 0.6, 1.1, 4)) == cl.PARTLY
    assert rule.decide(Estimate(0.95, 0.92, 0.98, 4)) == cl.NOT_REPRODUCED
    assert "smallest effect that counts: 0.1" in rule.text
    assert cl.rule_from_dict(rule.as_dict()) == rule
    # without a margin the stored spec is what records written before margins hold
    assert "margin" not in cl.Rule(1.0).as_dict()
    assert cl.rule_from_dict({"kind": "rule", "threshold": 1.0, "direction": "above",
                              "min_n": 2}) == cl.Rule(1.0)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        cl.Rule(1.0, margin=-0.1)
