"""The Dask runner (effdl_lib.toolkits.grid) and chapter 10 (grid_scheduling).

Cluster tests run on loopback only, with random ports and no dashboard, and check that
no process outlives them. No test asserts on wall time."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import psutil
import pytest

from effdl_lib.chapter import check_chapter
from effdl_lib.chapters import grid_scheduling as gs
from effdl_lib.claims import Measurement
from effdl_lib.config import ConfigError
from effdl_lib.toolkits import grid

# This module's helpers travel to Dask workers by value (workers cannot import tests/).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _children() -> set[int]:
    """Live descendants, except multiprocessing's resource tracker: Python starts it
    once per interpreter with the first spawned process and ends it at exit."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE or "resource_tracker" in " ".join(p.cmdline()):
                continue
        except psutil.Error:
            continue
        out.add(p.pid)
    return out


def _wait_gone(before: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = _children() - before
        if not left:
            return left
        time.sleep(0.1)
    return _children() - before


def _count_calls(config):
    """Sweep function with a side effect per call, so skipped keys can be counted."""
    Path(config["log"], f"{config['x']}-{time.time_ns()}").touch()
    return {"y": 10 * config["x"]}


def _fails_on_three(config):
    if config["x"] == 3:
        raise ValueError("three is bad")
    return config["x"]


def _trivial_chapter(chapter):
    if chapter == "bad":
        raise RuntimeError("boom")
    return 0 if chapter != "fails" else 1


# ------------------------------------------------------------------ sweep, serial

def test_config_key_is_stable_and_order_free():
    a = grid.config_key({"seed": 1, "arm": "kd"})
    assert a == grid.config_key({"arm": "kd", "seed": 1})
    assert a != grid.config_key({"arm": "kd", "seed": 2})
    assert len(a) == 16 and all(c in "0123456789abcdef" for c in a)


def test_serial_sweep_rows_in_input_order_with_list_and_scalar_results():
    df = grid.sweep(lambda c: [{"k": 0}, {"k": 1}] if c["x"] == 2 else {"k": c["x"] * 2},
                    [{"x": 2}, {"x": 0}], mode="serial", progress=False)
    assert df.to_dict("records") == [{"x": 2, "k": 0}, {"x": 2, "k": 1}, {"x": 0, "k": 0}]
    df = grid.sweep(lambda c: c["x"] + 1, [{"x": 5}], mode="serial", progress=False)
    assert df.to_dict("records") == [{"x": 5, "value": 6}]


def test_checkpoint_skips_finished_keys(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    configs = [{"x": i, "log": str(log)} for i in range(5)]
    key = lambda c: f"x{c['x']}"  # noqa: E731
    first = grid.sweep(_count_calls, configs[:3], key=key, mode="serial",
                       checkpoint=tmp_path / "ck", progress=False)
    assert first.attrs["computed"] == 3 and len(os.listdir(log)) == 3
    again = grid.sweep(_count_calls, configs, key=key, mode="serial",
                       checkpoint=tmp_path / "ck", progress=False)
    assert again.attrs == {**again.attrs, "computed": 2, "from_checkpoint": 3}
    assert len(os.listdir(log)) == 5  # only x3 and x4 ran
    assert list(again["y"]) == [0, 10, 20, 30, 40]
    assert grid.Checkpoint(tmp_path / "ck").keys() == [f"x{i}" for i in range(5)]
    assert not list((tmp_path / "ck").glob(".*.tmp"))
    (tmp_path / "ck" / "x4.pkl").write_bytes(b"not a pickle")  # a damaged file
    with pytest.warns(UserWarning, match="x4.pkl is unreadable"):
        third = grid.sweep(_count_calls, configs, key=key, mode="serial",
                           checkpoint=tmp_path / "ck", progress=False)
    assert third.attrs["computed"] == 1 and third.equals(again)


def test_failure_names_the_configuration_and_keeps_finished_results(tmp_path):
    configs = [{"x": i} for i in range(5)]
    with pytest.raises(grid.SweepError, match=r"\{'x': 3\}.*ValueError: three is bad.*"
                                              r"3 finished results are checkpointed"):
        grid.sweep(_fails_on_three, configs, key=lambda c: f"x{c['x']}", mode="serial",
                   checkpoint=tmp_path, retries=1, progress=False)
    assert grid.Checkpoint(tmp_path).keys() == ["x0", "x1", "x2"]
    df = grid.sweep(_fails_on_three, configs, key=lambda c: f"x{c['x']}", mode="serial",
                    checkpoint=tmp_path, errors="record", progress=False)
    assert df["error"].notna().tolist() == [False, False, False, True, False]
    assert grid.Checkpoint(tmp_path).keys() == ["x0", "x1", "x2", "x4"]


@pytest.mark.parametrize("kwargs, err, msg", [
    ({"configs": [{"x": 1}, {"x": 1}]}, ValueError, "duplicate keys"),
    ({"configs": [{"x": 1}, 5]}, TypeError, "configuration 1 must be a mapping"),
    ({"configs": [{"x": 1}], "mode": "threads"}, ValueError, "mode must be one of"),
    ({"configs": [{"x": 1}], "key": lambda c: "a/b"}, ValueError, "safe file name"),
    ({"configs": [{"x": 1}], "retries": -1}, ValueError, "retries"),
    ({"configs": [{"x": 1}], "errors": "ignore"}, ValueError, "errors must be"),
])
def test_sweep_bad_input(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        grid.sweep(lambda c: c, mode=kwargs.pop("mode", "serial"), progress=False, **kwargs)


def test_result_field_clashing_with_config_is_an_error():
    with pytest.raises(ValueError, match=r"\['x'\]"):
        grid.sweep(lambda c: {"x": 0}, [{"x": 1}], mode="serial", progress=False)


def test_scheduler_address_from_environment(monkeypatch):
    monkeypatch.setenv(grid.SCHEDULER_ENV, "tcp://127.0.0.1:8786")
    assert grid.scheduler_address() == "tcp://127.0.0.1:8786"
    monkeypatch.setenv(grid.SCHEDULER_ENV, "localhost:8786")
    with pytest.raises(ValueError, match=r"tcp://host:port.*\$EFFDL_SCHEDULER"):
        grid.scheduler_address()
    monkeypatch.delenv(grid.SCHEDULER_ENV)
    assert grid.scheduler_address() is None
    with pytest.raises(ValueError, match="local=True"):
        with grid.dask_client(1, "tcp://127.0.0.1:1", local=True):
            pass


def test_run_chapters_serial_statuses_in_order():
    df = grid.run_chapters(_trivial_chapter, ["b", "fails", "bad", "a"], jobs=1,
                           progress=False)
    assert df["chapter"].tolist() == ["b", "fails", "bad", "a"]
    assert df["status"].tolist()[:2] == [0, 1] and df["status"].tolist()[3] == 0
    assert df["status"].iloc[2] == "error: RuntimeError: boom"
    assert set(df["pid"]) == {os.getpid()}
    with pytest.raises(ValueError, match="jobs"):
        grid.run_chapters(_trivial_chapter, ["a"], jobs=0)
    with pytest.raises(ValueError, match="listed twice"):
        grid.run_chapters(_trivial_chapter, ["a", "a"], jobs=1)
    assert grid.run_chapters(_trivial_chapter, [], jobs=2).empty


# ------------------------------------------------------------------ local cluster

def test_local_cluster_order_checkpoint_chapters_and_clean_shutdown(tmp_path):
    before = _children()
    # later configurations finish first: the table must still come in input order
    configs = [{"x": i, "seconds": 0.05 * (6 - i)} for i in range(6)]
    with grid.dask_client(2) as client:
        workers = gs.worker_pids(client)
        assert len(workers) == 2 and os.getpid() not in workers
        assert client.run(lambda: os.environ["OMP_NUM_THREADS"]) == \
            dict.fromkeys(client.run(lambda: 0), "1")
        df = grid.sweep(gs.sleep_task, configs, client=client, progress=False,
                        key=lambda c: f"x{c['x']}", checkpoint=tmp_path)
        assert df["x"].tolist() == list(range(6))
        assert df["y"].tolist() == [i * i for i in range(6)]
        assert set(df["pid"]) <= set(workers)
        # the execution monitor: 2**16 keys in 16 chunks, key in chunk 5
        key = 5 * 2**12 + 77
        mon = gs.key_search(client, gs.xor_encrypt(gs.PLAINTEXT, key), bits=16, chunk_bits=12)
        assert mon["key"] == key and mon["chunks_total"] == 16
        assert 4 <= mon["chunks_done"] <= 16 and mon["stop_s"] >= 0  # completions interleave
        assert not any(client.processing().values())
        # the book's runner on workers: every chapter once, statuses in order
        again = grid.sweep(gs.sleep_task, configs, client=client, progress=False,
                           key=lambda c: f"x{c['x']}", checkpoint=tmp_path)
        assert again.attrs["computed"] == 0 and again.equals(df)
    assert _wait_gone(before) == set()
    chapters = grid.run_chapters(_trivial_chapter, ["a", "bad", "fails"], jobs=2,
                                 progress=False)
    assert chapters["status"].tolist()[::2] == [0, 1]
    assert chapters["status"].iloc[1].startswith("error: RuntimeError")
    assert os.getpid() not in set(chapters["pid"])
    assert _wait_gone(before) == set()


def test_exhausted_allowed_failures_is_a_clear_error(tmp_path, monkeypatch):
    # the chapter's fault demos always use their own local cluster, never a remote one
    monkeypatch.setenv(grid.SCHEDULER_ENV, "tcp://127.0.0.1:1")
    before = _children()
    out = gs.exhausted_failures(str(tmp_path), allowed_failures=0)
    assert out["error"] == "SweepError" and out["cause"] == "KilledWorker"
    # one task per worker at a time: only the crashing task was on the dying worker,
    # so it is the one named; what finished before it stays on disk
    assert "{'x': 2, 'crash': True}" in out["message"]
    assert out["kept"] == ["x0", "x1"]
    assert _wait_gone(before) == set()


def _start(args, **kw):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, **kw)


def test_external_scheduler_two_workers_one_killed(tmp_path, monkeypatch):
    """What the README's cluster recipe does, on loopback: a scheduler process, two
    worker processes (no nanny, so a killed one stays dead), EFFDL_SCHEDULER set; one
    worker is killed mid-sweep and every result still arrives exactly once."""
    sched_file = tmp_path / "scheduler.json"
    procs = [_start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                     "--no-dashboard", "--scheduler-file", str(sched_file)])]
    try:
        for _ in range(300):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.05)
        import json
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(_start(["distributed.cli.dask_worker", address, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"]))
        from distributed import Client
        with Client(address, timeout=30) as c:
            c.wait_for_workers(2, timeout=30)
        monkeypatch.setenv(grid.SCHEDULER_ENV, address)
        log, ck = tmp_path / "log", tmp_path / "ck"
        log.mkdir()
        configs = [{"x": i, "seconds": 0.1, "log": str(log)} for i in range(20)]
        victim = procs[1]

        import threading

        def kill_when_started():
            while len(os.listdir(log)) < 4 and victim.poll() is None:
                time.sleep(0.01)
            victim.send_signal(signal.SIGKILL)

        killer = threading.Thread(target=kill_when_started, daemon=True)
        killer.start()
        df = grid.sweep(gs.sleep_task, configs, key=lambda c: f"x{c['x']}",
                        checkpoint=ck, progress=False)
        killer.join(5)
        assert victim.wait(5) == -signal.SIGKILL
        assert df["x"].tolist() == list(range(20))             # every result, once, in order
        assert df["y"].tolist() == [i * i for i in range(20)]
        assert len(grid.Checkpoint(ck).keys()) == 20
        started_by = {int(name.split("-")[1]) for name in os.listdir(log)}
        survivor = procs[2].pid
        assert started_by == {victim.pid, survivor}              # the victim was working
        assert set(df["pid"]) <= started_by
        assert (df["pid"] == survivor).sum() >= 10               # the survivor took over
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    assert all(p.poll() is not None for p in procs)


# ------------------------------------------------------------------ the scheduling study

HAND = np.array([[1.0, 1.5], [1.0, 1.5], [3.0, 100.0]])


def test_min_min_mct_sufferage_on_a_hand_case():
    # Min-Min: t0 -> m0 (1); t1 -> m1 (1.5); t2 -> m0 (1 + 3 = 4): makespan 4.
    assert gs.min_min(HAND).tolist() == [0, 1, 0]
    assert gs.makespan(HAND, gs.min_min(HAND)) == 4.0
    # MCT in index order makes the same choices here.
    assert gs.mct(HAND).tolist() == [0, 1, 0]
    # Sufferage maps t2 first (it would suffer 97) and finds the optimum, 3.
    assert gs.sufferage(HAND).tolist() == [1, 1, 0]
    opt, _ = gs.brute_force_optimum(HAND)
    assert opt == 3.0 == gs.makespan(HAND, gs.sufferage(HAND))


@pytest.mark.parametrize("seed", range(4))
def test_heuristics_never_beat_the_brute_force_optimum(seed):
    cons = gs.CONSISTENCIES[seed % 3]
    etc = gs.etc_matrix(7, 3, cons, "hihi", seed)
    opt, best = gs.brute_force_optimum(etc)
    assert gs.makespan(etc, best) == pytest.approx(opt)
    rows = {r["heuristic"]: r["makespan"]
            for r in gs.run_heuristics(etc, seed, ga_max_generations=60)}
    assert set(rows) == set(gs.HEURISTICS)
    assert all(ms >= opt - 1e-9 for ms in rows.values())
    # by construction: seeded SA and Braun's GA keep Min-Min's schedule unless better,
    # the modified GA keeps its three seeds (elitism) and rebalancing only lowers
    assert rows["sa_minmin"] <= rows["min_min"] + 1e-9
    assert rows["ga_braun"] <= rows["min_min"] + 1e-9
    assert rows["ga_modified"] <= min(rows["min_min"], rows["mct"], rows["sufferage"]) + 1e-9


def test_vectorised_makespans_match_the_loop():
    etc = gs.etc_matrix(50, 6, "inconsistent", "lohi", 1)
    pop = np.random.default_rng(0).integers(0, 6, (30, 50))
    np.testing.assert_allclose(gs.makespans(etc, pop), gs.makespans_loop(etc, pop))
    assert gs.makespan(etc, pop[0]) == pytest.approx(gs.makespans_loop(etc, pop[:1])[0])


def test_etc_matrix_consistency_and_ranges():
    c = gs.etc_matrix(40, 8, "consistent", "hilo", 0)
    assert np.all(np.diff(c, axis=1) >= 0)
    s = gs.etc_matrix(40, 8, "semi-consistent", "hilo", 0)
    assert np.all(np.diff(s[:, 0::2], axis=1) >= 0)
    assert not np.all(np.diff(s[:, 1::2], axis=1) >= 0)
    i = gs.etc_matrix(40, 8, "inconsistent", "lolo", 0)
    assert i.shape == (40, 8) and i.min() >= 1 and i.max() < 100 * 10
    assert np.array_equal(gs.etc_matrix(5, 3, seed=9), gs.etc_matrix(5, 3, seed=9))
    with pytest.raises(ValueError, match="consistency must be one of"):
        gs.etc_matrix(4, 2, "partial")
    with pytest.raises(ValueError, match="heterogeneity must be one of"):
        gs.etc_matrix(4, 2, "inconsistent", "high")
    with pytest.raises(ValueError, match="finite times"):
        gs.min_min(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="too many"):
        gs.brute_force_optimum(np.ones((30, 4)))


def test_rebalance_never_raises_the_makespan():
    etc = gs.etc_matrix(30, 4, "inconsistent", "hihi", 3)
    start = np.zeros(30, dtype=int)  # everything on machine 0
    out, tried = gs.rebalance(etc, start)
    assert gs.makespan(etc, out) < gs.makespan(etc, start) and tried > 0
    again, _ = gs.rebalance(etc, out)
    assert gs.makespan(etc, again) == pytest.approx(gs.makespan(etc, out))


def test_penalties_and_table():
    rows = [{"consistency": c, "heterogeneity": "hihi", "seed": 0, "heuristic": h,
             "makespan": m, "seconds": 1.0}
            for c in gs.CONSISTENCIES for h, m in [("min_min", 2.0), ("sa", 4.0)]]
    t = gs.penalties(pd.DataFrame(rows))
    assert t[t["heuristic"] == "sa"]["penalty"].eq(1.0).all()
    assert t[t["heuristic"] == "min_min"]["penalty"].eq(0.5).all()
    table = gs.penalty_table(t)
    assert table.loc["sa", "paper consistent"] == 1.0
    assert table.loc["min_min", "ours inconsistent"] == 0.5


# ------------------------------------------------------------------ grid pieces

def test_xor_search_finds_the_key_in_its_chunk_only():
    key = 0x00ABCDEF
    cipher = gs.xor_encrypt(gs.PLAINTEXT, key)
    hit = gs.search_chunk({"cipher": cipher, "start": key - 100, "count": 4096, "chunk": 0})
    assert hit["key"] == key
    miss = gs.search_chunk({"cipher": cipher, "start": 0, "count": 4096, "chunk": 0})
    assert miss["key"] is None and miss["tried"] == 4096
    with pytest.raises(ValueError, match="multiple of 4"):
        gs.xor_encrypt(b"abc", 1)
    with pytest.raises(ValueError, match="32-bit"):
        gs.xor_encrypt(gs.PLAINTEXT, 2**32)


def test_sort_task_is_deterministic_and_checks_input():
    a, b = gs.sort_task({"n": 1000, "seed": 3}), gs.sort_task({"n": 1000, "seed": 3})
    assert a["checksum"] == b["checksum"] != gs.sort_task({"n": 1000, "seed": 4})["checksum"]
    with pytest.raises(ValueError, match="n must be >= 0"):
        gs.sort_task({"n": -1, "seed": 0})


def test_timed_arms_serial_and_speedups_by_hand():
    t = gs.timed_arms({"serial": None}, gs.sort_task, lambda r: gs.sort_configs(3, 100, r), 2)
    assert t["repeat"].tolist() == [0, 1] and t["tasks"].tolist() == [3, 3]
    assert {"other_busy", "steal", "psi_cpu"} <= set(t) and (t["seconds"] > 0).all()
    fake = pd.DataFrame({"n": [5] * 4, "task_ms": [1.0] * 4, "repeat": [0, 0, 1, 1],
                         "arm": ["serial", "2 workers"] * 2, "seconds": [4.0, 2.0, 3.0, 2.5],
                         "other_busy": [0.1, 0.2, 0.0, 0.3], "steal": [0.0] * 4})
    sp = gs.speedups(fake).iloc[0]
    assert sp["speedup"] == 3.0 / 2.0 and sp["speedup_median"] == pytest.approx((2 + 1.2) / 2)
    assert sp["other_busy_max"] == 0.3


def test_crossover_interpolates_on_a_log_axis():
    t = pd.DataFrame({"task_ms": [1.0, 10.0, 100.0], "speedup": [0.5, 0.5, 1.5]})
    assert gs.crossover(t) == pytest.approx(np.sqrt(10 * 100))
    assert gs.crossover(t.assign(speedup=[1.2, 1.5, 1.8])) == 1.0
    assert gs.crossover(t.assign(speedup=[0.1, 0.2, 0.3])) is None


# ------------------------------------------------------------------ config, claims, measure

def test_chapter_module_is_sound_and_config_checks_values():
    assert check_chapter(gs) == []
    assert gs.Config.resolve("smoke").etc_tasks == 64
    with pytest.raises(ConfigError, match="chunk_bits"):
        gs.Config.resolve("cpu", {"chunk_bits": 30, "key_bits": 24})
    with pytest.raises(ConfigError, match="key_position"):
        gs.Config.resolve("cpu", {"key_position": 1.0})
    with pytest.raises(ConfigError, match="unknown parameter 'worker'"):
        gs.Config.resolve("cpu", {"worker": 3})


def _fake_results(other_busy=0.0):
    sort = pd.DataFrame([{"repeat": r, "arm": a, "tasks": 10, "seconds": s, "other_busy": 0,
                          "steal": 0, "psi_cpu": None}
                         for r in range(2) for a, s in [("serial", 2.0), ("2 workers", 1.1)]])
    overhead = pd.DataFrame([{"repeat": r, "arm": "2 workers", "ms_per_task": 1.0 + r}
                             for r in range(3)])
    cross = pd.DataFrame([{"n": n, "task_ms": ms, "repeat": r, "arm": a, "seconds": s,
                           "other_busy": other_busy, "steal": 0.0, "psi_cpu": None}
                          for n, ms in [(10, 1.0), (100, 250.0)] for r in range(3)
                          for a, s in [("serial", 2.0 + r / 10), ("2 workers", 1.0)]])
    faults = [{"n_tasks": 10, "results": 10, "distinct": 10, "correct": 10, "starts": 11}]
    monitor = [{"stop_s": 0.05, "chunks_done": 3, "chunks_total": 10}]
    sched = gs.penalties(pd.DataFrame(
        [{"consistency": "consistent", "heterogeneity": "hihi", "seed": s, "heuristic": h,
          "makespan": m + s, "seconds": sec}
         for s in range(3) for h, m, sec in [("min_min", 2, .1), ("mct", 3, .1),
                                             ("sufferage", 2.5, .1), ("sa", 9, .1),
                                             ("sa_minmin", 2, .1), ("ga_braun", 1.8, 2.0),
                                             ("ga_modified", 1.7, 1.0)]]))
    return {"setup_s": 2.0, "sort": sort, "overhead": overhead, "crossover": cross,
            "faults": faults, "monitor": monitor, "scheduling": sched}


def test_measure_covers_every_claim_and_withholds_timing_under_load():
    m = gs.measure(_fake_results())
    assert list(m) == list(gs.CLAIMS) and all(isinstance(v, Measurement) for v in m.values())
    assert m["speedup-2-workers"].estimate.mean == pytest.approx(2.1)
    assert m["killed-worker-no-loss"].estimate.mean == 1.0
    assert m["overhead-below-5ms"].estimate.mean == pytest.approx(2.0)
    assert m["ga-modified-faster"].estimate.mean == pytest.approx(0.5)
    assert m["minmin-beats-mct"].estimate.mean > 0
    busy = gs.measure(_fake_results(other_busy=0.6))["speedup-2-workers"]
    assert busy.estimate is None and "withheld" in busy.note and "60%" in busy.note
    slow = _fake_results()
    slow["monitor"] = [{"stop_s": 1.5, "chunks_done": 3, "chunks_total": 10,
                        "other_busy": 0.6, "steal": 0.0, "psi_cpu": None}]
    assert gs.measure(slow)["monitor-stops"].estimate is None     # a miss under load
    slow["monitor"][0]["stop_s"] = 0.2
    assert gs.measure(slow)["monitor-stops"].estimate.mean == 0.2  # a bound under load


def test_speedup_gate_takes_cpu_pressure_from_the_serial_arm_only():
    """Two workers on two cores make their own CPU pressure; only the serial arm's
    pressure (a core left free) can show another tenant."""
    r = _fake_results()
    r["crossover"]["psi_cpu"] = np.where(r["crossover"]["arm"] == "2 workers", 0.3, 0.02)
    sp = gs.speedup_samples(r["crossover"])
    assert sp["psi_cpu"] == pytest.approx(0.02)
    assert gs.measure(r)["speedup-2-workers"].estimate is not None
    r["crossover"].loc[r["crossover"]["arm"] == "serial", "psi_cpu"] = 0.4
    held = gs.measure(r)["speedup-2-workers"]
    assert held.estimate is None and "pressure" in held.note


def test_local_workers_keep_glibc_default_trim_threshold_and_our_environment():
    """Dask's MALLOC_TRIM_THRESHOLD_ (64 KiB) makes torch training in a worker nearly
    twice as slow; our local clusters start workers without it."""
    assert "MALLOC_TRIM_THRESHOLD_" not in grid.worker_spawn_environ()
    before = dict(os.environ)
    with grid.dask_client(1) as client:
        env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(env.values()) == {None}
    # the nannies' variables (OMP_NUM_THREADS=1, PYTHONHASHSEED) do not stay behind here
    assert dict(os.environ) == before
