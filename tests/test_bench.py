"""The timing toolkit: parsers and rules against hand values, summaries against numpy,
interleaving order and bookkeeping with deterministic fake arms.  No test asserts on
wall time."""
import itertools

import numpy as np
import pytest

from effdl_lib.stats import bootstrap_ratio
from effdl_lib.toolkits import bench

STAT = """cpu  100 10 50 800 20 5 5 10 0 0
cpu0 50 5 25 400 10 3 2 5 0 0
cpu1 50 5 25 400 10 2 3 5 0 0
intr 1 2 3
ctxt 99
"""
PSI = """some avg10=2.19 avg60=3.27 avg300=1.34 total=6710188
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""


def test_parse_proc_stat_by_hand():
    busy, total, steal, ncpu = bench.parse_proc_stat(STAT)
    assert busy == 100 + 10 + 50 + 5 + 5
    assert total == busy + 800 + 20 + 10
    assert steal == 10 and ncpu == 2


def test_parse_proc_stat_rejects_garbage():
    with pytest.raises(ValueError, match="aggregate"):
        bench.parse_proc_stat("intr 1 2 3\n")


def test_parse_psi():
    assert bench.parse_psi(PSI) == 6710188
    assert bench.parse_psi("full avg10=0 total=5\n") is None


def _sample(t, busy, total, steal=0, ncpu=2, own=0.0, psi=None, load=(1.0, 1.0, 1.0)):
    return bench.CpuSample(t, busy, total, steal, ncpu, own, psi, load)


def test_interference_other_cores_by_hand():
    tck = bench._CLK_TCK
    # 2 CPUs, 1 s: 2*tck jiffies elapsed; we used 1 CPU-second, all busy -> others busy 100 %
    a = _sample(0.0, 0, 0, psi=0)
    b = _sample(1.0, 2 * tck, 2 * tck, own=1.0, psi=250_000)
    i = bench.interference_between(a, b)
    assert i.other_busy == pytest.approx(1.0)
    assert i.psi_cpu == pytest.approx(0.25)
    assert i.steal == 0.0 and not i.quiet()
    # we were the only busy process: the other core idle
    c = _sample(1.0, tck, 2 * tck, steal=0, own=1.0, psi=0)
    j = bench.interference_between(a, c)
    assert j.other_busy == pytest.approx(0.0) and j.quiet()
    # a quarter of the other core, plus 10 % of all time stolen
    d = _sample(1.0, tck + tck // 4, 2 * tck, steal=2 * tck // 10, own=1.0, psi=0)
    k = bench.interference_between(a, d)
    assert k.other_busy == pytest.approx((tck // 4) / tck)
    assert k.steal == pytest.approx((2 * tck // 10) / (2 * tck))
    assert len(k.reasons()) == 2 and "stolen" in k.reasons()[1]


def test_interference_without_psi_and_one_cpu():
    tck = bench._CLK_TCK
    a = _sample(0.0, 0, 0, ncpu=1)
    b = _sample(1.0, tck, tck, ncpu=1, own=0.5)
    i = bench.interference_between(a, b)
    assert i.psi_cpu is None and i.other_busy == pytest.approx(0.5)
    assert "n/a" in i.describe()


def test_quiet_rule_limits_and_text():
    with pytest.raises(ValueError):
        bench.QuietRule(max_other_busy=1.5)
    loose = bench.QuietRule(max_other_busy=1.0, max_steal=1.0, max_psi=1.0)
    busy = bench.Interference(1.0, 0.9, 0.2, 0.5, 1.0, 2)
    assert loose.text.startswith("quiet if") and busy.quiet(loose) and not busy.quiet()


def test_cpu_sample_from_fake_proc(tmp_path):
    (tmp_path / "pressure").mkdir()
    (tmp_path / "stat").write_text(STAT)
    (tmp_path / "pressure" / "cpu").write_text(PSI)
    (tmp_path / "loadavg").write_text("0.85 0.48 0.19 2/100 8850\n")
    s = bench.cpu_sample(tmp_path, own_cpu_s=3.0)
    assert (s.busy, s.steal, s.ncpu, s.psi_some_us) == (170, 10, 2, 6710188)
    assert s.loadavg == (0.85, 0.48, 0.19) and s.own_cpu_s == 3.0
    with pytest.raises(OSError, match="interference"):
        bench.cpu_sample(tmp_path / "missing")


def test_monitor_on_this_machine():
    with bench.Monitor() as mon:
        sum(range(10000))
    r = mon.result
    assert 0 <= r.other_busy <= 1 and 0 <= r.steal <= 1 and r.wall_s > 0
    assert r.loadavg_before is not None and len(r.as_dict()["loadavg_after"]) == 3


def test_wait_for_quiet_times_out_on_a_busy_fake(tmp_path, monkeypatch):
    tck = bench._CLK_TCK
    state = {"k": 0}
    clock = itertools.count()

    def fake_sample(proc="/proc", own_cpu_s=None):
        state["k"] += 1
        k = state["k"]  # every reading: both cores fully busy, never ours
        return _sample(float(k), 2 * tck * k, 2 * tck * k, psi=0)

    monkeypatch.setattr(bench, "cpu_sample", fake_sample)
    monkeypatch.setattr(bench.time, "monotonic", lambda: float(next(clock)))
    ok, seen, waited = bench.wait_for_quiet(timeout_s=3, window_s=1, sleep=lambda s: None)
    assert not ok and seen.other_busy == pytest.approx(1.0) and waited >= 3
    with pytest.raises(ValueError):
        bench.wait_for_quiet(timeout_s=-1)


def test_low_quantile_and_summarize_match_numpy():
    x = [5.0, 1.0, 4.0, 2.0, 3.0, np.nan]
    assert bench.low_quantile(x, 0) == 1.0
    assert bench.low_quantile(x, 0.2) == pytest.approx(np.quantile([1, 2, 3, 4, 5], 0.2))
    s = bench.summarize(x)
    assert s == {"min": 1.0, "q20": pytest.approx(1.8), "median": 3.0, "n": 5}
    for bad in ([], [np.nan]):
        with pytest.raises(ValueError):
            bench.summarize(bad)
    with pytest.raises(ValueError):
        bench.low_quantile([1.0], 2)


def test_interleave_rotates_order_and_keeps_metrics():
    calls = []

    def arm(name, value):
        def f():
            calls.append(name)
            return {"ns": value + len(calls) * 0.0, "aux": 1.0} if name != "c" else value
        return f

    res = bench.interleave({"a": arm("a", 2.0), "b": arm("b", 1.0), "c": arm("c", 4.0)},
                           repeats=4, warmup=1)
    assert calls[:3] == ["a", "b", "c"]                      # warm-up, unrecorded
    assert calls[3:] == list("abc" "bca" "cab" "abc")        # rotated per repeat
    assert len(res.rows) == 12 and len(res.per_repeat) == 4
    np.testing.assert_array_equal(res.values("a", "ns"), [2.0] * 4)
    np.testing.assert_array_equal(res.values("c"), [4.0] * 4)
    assert res.metrics == ["ns", "aux", "value"]
    assert res.ratio("a", "b", "ns").mean == pytest.approx(2.0)
    assert np.isnan(res.values("a", "value")).all()   # "a" never returned "value"
    with pytest.raises(KeyError, match="unknown arm"):
        res.values("zzz")
    with pytest.raises(ValueError):
        bench.interleave({}, 3)
    with pytest.raises(ValueError):
        bench.interleave({"a": lambda: 1.0}, 0)


def test_ratio_is_stats_bootstrap_ratio_paired():
    vals = {"x": iter([3.0, 4.0, 5.0, 6.0, 9.0]), "y": iter([1.0, 2.0, 2.5, 2.0, 3.0])}
    res = bench.interleave({k: (lambda k=k: next(vals[k])) for k in vals}, repeats=5,
                           rotate=False)
    got = res.ratio("x", "y")
    want = bootstrap_ratio([3, 4, 5, 6, 9], [1, 2, 2.5, 2, 3], paired=True)
    assert (got.mean, got.ci_low, got.ci_high) == pytest.approx((want.mean, want.ci_low, want.ci_high))
    assert res.min_ratio("x", "y") == pytest.approx(3.0)
    s = res.summary()
    assert s.loc["x", "min"] == 3.0 and s.loc["y", "median"] == 2.0


def test_gate_reports_reason_when_loaded():
    res = bench.interleave({"a": lambda: 1.0}, repeats=2)
    loaded = bench.Interference(1.0, 0.9, 0.0, 0.5, 1.0, 2, (1.9, 1, 1), (2.0, 1, 1))
    res.interference = loaded
    why = res.gate()
    assert why.startswith("machine loaded") and "90% busy" in why and "pressure 50%" in why
    res.interference = bench.Interference(1.0, 0.0, 0.0, 0.0, 1.0, 2)
    assert res.gate() is None
    d = res.as_dict()
    assert d["arms"] == ["a"] and "process_threads" in d["threads"]


def test_find_cliff_by_hand():
    sizes = [1, 2, 4, 8, 16, 32]
    got = bench.find_cliff(sizes, [1.0, 1.1, 1.2, 1.4, 3.0, 9.0])
    assert got == {"base": 1.0, "last_below": 8.0, "first_above": 16.0}
    # a lone spike at 2 (interference) is not the cliff; the level is the minimum
    spiky = bench.find_cliff(sizes, [1.2, 30.0, 1.0, 1.4, 3.0, 9.0])
    assert spiky == {"base": 1.2, "last_below": 8.0, "first_above": 16.0}
    assert bench.find_cliff(sizes, [1.0, 5.0, 5.0, 5.0, 5.0, 5.0], base_points=1)["last_below"] == 1.0
    flat = bench.find_cliff(sizes, [1.0] * 6)
    assert flat["first_above"] is None and flat["last_below"] == 32.0
    with pytest.raises(ValueError):
        bench.find_cliff([1, 1, 2], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        bench.find_cliff([1, 2], [1.0, 2.0])
    with pytest.raises(ValueError):
        bench.find_cliff(sizes, [1.0] * 6, factor=1.0)


def test_cache_levels_from_fake_sysfs(tmp_path):
    for i, (lvl, typ, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                          (2, "Unified", "1024K"), (3, "Unified", "32768K")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{lvl}\n")
        (d / "type").write_text(typ)
        (d / "size").write_text(size + "\n")
    levels = bench.cache_levels(tmp_path)
    assert [c["size_bytes"] for c in levels] == [48 << 10, 32 << 10, 1 << 20, 32 << 20]
    assert bench.last_level_cache_bytes(tmp_path) == 32 << 20
    assert bench.last_level_cache_bytes(tmp_path / "none") is None


def test_thp_mode_and_hardware(tmp_path):
    f = tmp_path / "enabled"
    f.write_text("always [madvise] never\n")
    assert bench.thp_mode(f) == "madvise"
    assert bench.thp_mode(tmp_path / "missing") is None
    hw = bench.hardware()
    assert hw["logical_cpus"] >= 1 and isinstance(hw["caches"], list)
    t = bench.thread_info()
    assert t["process_threads"] >= 1


def test_geometric_sizes_and_time_ns():
    assert bench.geometric_sizes(4, 16, 1) == [4, 8, 16]
    assert bench.geometric_sizes(4, 16, 2) == [4, 6, 8, 11, 16]
    with pytest.raises(ValueError):
        bench.geometric_sizes(0, 4)
    assert bench.time_ns(lambda: None, number=3) >= 0
    with pytest.raises(ValueError):
        bench.time_ns(lambda: None, number=0)
