"""An ad-hoc compute grid, then and now (Menghani et al., arXiv:2010.02348), on Dask.

Two halves, one per part of the 2010 report:

- **The grid** (its supervisor/worker design against Dask distributed): the report's
  sort workload scaled to this machine (serial against 1 and 2 Dask workers), the
  overhead of an empty task, the task size below which distribution loses, the
  execution monitor (a brute-force XOR key search that stops every task at the first
  hit), and faults (a killed worker; a task that keeps killing its worker). Task
  functions are module-level so worker processes import them; timing helpers record
  the CPU time other processes took during each timed section.
- **The scheduling study** (simulation only, as in the report): Braun et al.'s ETC
  matrices, Min-Min, MCT, Sufferage, simulated annealing (plain and seeded with
  Min-Min), Braun's GA and the report's modified GA, with vectorised makespan
  evaluation of whole populations.

The runner itself is :mod:`effdl_lib.toolkits.grid`. Explained in ``notebooks/10_grid.py``.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd

from ..claims import Claim, Measurement, Rule, Untestable, claims_catalog, ours, paper, related
from ..config import ChapterConfig, Range, require
from ..stats import bootstrap_ratio, mean_ci, paired_diff, point
from ..toolkits import bench, grid

SLUG = "10_grid"
TITLE = "An ad-hoc compute grid, then and now"
ARXIV = "2010.02348"

# ====================================================================== the grid

#: the report's components beside Dask's equivalents (chapter table)
ARCHITECTURE = [
    ("supervisor", "one process: discovery, queue, scheduling, result compilation",
     "`dask scheduler` (one process; `LocalCluster` starts it in-process)"),
    ("worker", "daemon that unpacks, compiles and runs a task archive with a time limit",
     "`dask worker tcp://host:8786` (a nanny restarts it if it dies)"),
    ("discovery", "UDP broadcast on the LAN", "workers connect to a known scheduler address"),
    ("task description", "XML: priority, dependencies, timeout, sources, commands",
     "`client.submit(fn, *args, priority=, retries=, resources=)`; futures as arguments"),
    ("dependencies", "task ids in the XML", "a future passed as an argument (a task graph)"),
    ("result compilation", "a reduce program run on the supervisor",
     "a task that takes the other futures, or `client.gather`"),
    ("execution monitor", "a program that stops, continues or redoes tasks at checkpoints",
     "`as_completed` + `client.cancel` (this chapter's key search)"),
    ("heartbeats", "every 0.4 s; worker declared dead after 3 s",
     "worker heartbeats to the scheduler; `distributed.scheduler.worker-ttl`"),
    ("requeueing", "failed or timed-out tasks requeued, worker frozen for a while",
     "lost-worker rescheduling up to `allowed-failures` (default 3), then `KilledWorker`;"
     " `retries=` for exceptions"),
    ("checkpointing", "completed task ids on disk; a restarted supervisor skips them",
     "not built in: `effdl_lib.toolkits.grid.sweep(checkpoint=...)`"),
    ("scheduler policy", "first idle worker (GA and SA only in simulation)",
     "work stealing, data locality, priorities"),
    ("file transfer", "task archives over TCP", "pickled functions and data over TCP"),
]


def sort_task(config: dict) -> dict:
    """The report's workload, one task: generate ``n`` integers from ``seed`` and sort
    them. Returns a checksum of the sorted array (so the work cannot be skipped) and the
    seconds spent inside the task."""
    t0 = time.perf_counter()
    n, seed = int(config["n"]), int(config["seed"])
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    x = np.random.default_rng(seed).integers(0, 2**31 - 1, n, dtype=np.int64)
    x.sort()
    checksum = int(x[:: max(1, n // 64)].sum() % 1_000_003) if n else 0
    return {"checksum": checksum, "task_s": time.perf_counter() - t0}


def empty_task(config: dict) -> int:
    """A task that does nothing: what is left of its time is the engine's overhead."""
    return 0


def sleep_task(config: dict) -> dict:
    """Sleep ``seconds`` then return ``x * x`` and the worker's pid (fault demos, tests);
    with ``log`` set, leave one file there per start, so a task started again after
    its worker died is counted."""
    if config.get("log"):
        path = os.path.join(config["log"], f"{config['x']}-{os.getpid()}-{time.time_ns()}")
        open(path, "w").close()
    time.sleep(float(config.get("seconds", 0.0)))
    return {"y": config["x"] * config["x"], "pid": os.getpid()}


def crash_task(config: dict) -> dict:
    """Kills its own worker process when ``config['crash']`` is true (a segfault in C,
    the OOM killer): no exception reaches Dask, only a lost worker."""
    if config.get("crash"):
        os._exit(13)
    return {"y": config["x"]}


# ---------------------------------------------------------------- timed runs

def _tree_cpu_s(extra_pids: Sequence[int] = ()) -> float:
    """CPU seconds of this process, its reaped children, its live descendants (the
    LocalCluster's worker processes) and ``extra_pids`` (workers started elsewhere on
    this machine), each process counted once."""
    import psutil
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    seen = {me.pid}
    procs = me.children(recursive=True)
    for pid in extra_pids:
        try:
            p = psutil.Process(pid)
            procs += [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    for p in procs:
        if p.pid in seen:
            continue
        seen.add(p.pid)
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:  # a worker that just died counts as zero
            continue
    return total


class Interference:
    """What other processes took while a section ran: :mod:`bench`'s counters, with this
    experiment's own CPU counted over the whole process tree (bench counts this process
    and its reaped children only, which would book Dask's workers as interference)."""

    def __init__(self, extra_pids: Callable[[], Sequence[int]] = lambda: ()):
        self._extra = extra_pids

    def __enter__(self):
        self.pids = list(self._extra())
        self.start = bench.cpu_sample(own_cpu_s=_tree_cpu_s(self.pids))
        return self

    def __exit__(self, *exc):
        end = bench.cpu_sample(own_cpu_s=_tree_cpu_s(self.pids))
        self.result = bench.interference_between(self.start, end)
        return False


def warm_up(client) -> None:
    """Import this module and run one small sort on every worker, so no timed section
    pays for a worker's first imports."""
    client.run(sort_task, {"n": 1000, "seed": 0})


def worker_pids(client) -> list[int]:
    """Process ids of a client's workers (empty for None)."""
    return sorted(client.run(os.getpid).values()) if client is not None else []


def run_batch(fn: Callable[[dict], Any], configs: list[dict], client=None) -> float:
    """Wall seconds to run ``fn`` over ``configs``: in this process when ``client`` is
    None, else submitted at once to the client's workers and gathered."""
    t0 = time.perf_counter()
    if client is None:
        for c in configs:
            fn(c)
    else:
        futures = client.map(fn, configs, pure=False)
        client.gather(futures)
        del futures
    return time.perf_counter() - t0


def timed_arms(arms: dict[str, Any], fn, configs_for: Callable[[int], list[dict]],
               repeats: int, label: dict | None = None) -> pd.DataFrame:
    """Interleaved repeats: each repeat runs every arm once (``arms``: name -> client, or
    None for serial in this process) in an order rotated by the repeat; one row per
    (repeat, arm) with the wall seconds and the interference during that arm
    (``other_busy``, ``steal``, ``psi_cpu``: shares, see :mod:`bench`)."""
    rows, names = [], list(arms)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            client = arms[name]
            configs = configs_for(r)
            with Interference() as probe:
                wall = run_batch(fn, configs, client)
            i = probe.result
            rows.append({**(label or {}), "repeat": r, "arm": name, "tasks": len(configs),
                         "seconds": wall, "other_busy": i.other_busy, "steal": i.steal,
                         "psi_cpu": i.psi_cpu})
    return pd.DataFrame(rows)


def sort_configs(n_tasks: int, n: int, repeat: int = 0) -> list[dict]:
    return [{"n": n, "seed": 1000 * repeat + i} for i in range(n_tasks)]


def task_seconds(n: int, repeats: int = 3) -> float:
    """Serial seconds of one sort task of size n (minimum of ``repeats``)."""
    return min(sort_task({"n": n, "seed": r})["task_s"] for r in range(repeats))


def crossover(table: pd.DataFrame, x: str = "task_ms", y: str = "speedup") -> float | None:
    """The task size where the speed-up first crosses 1 from below, interpolated on a
    log axis between neighbouring sizes; None when it never does in the range."""
    t = table.sort_values(x)
    xs, ys = t[x].to_numpy(float), t[y].to_numpy(float)
    if ys.size == 0:
        return None
    if ys[0] >= 1:
        return float(xs[0])
    for i in range(1, len(xs)):
        if ys[i - 1] < 1 <= ys[i]:
            lx0, lx1 = np.log(xs[i - 1]), np.log(xs[i])
            f = (1 - ys[i - 1]) / (ys[i] - ys[i - 1])
            return float(np.exp(lx0 + f * (lx1 - lx0)))
    return None


# ---------------------------------------------------------------- execution monitor

PLAINTEXT = b"attackatdawnnow!"  # 16 bytes; the searcher only knows: lowercase letters


def xor_encrypt(plain: bytes, key: int) -> np.ndarray:
    """XOR ``plain`` (a multiple of 4 bytes) with a repeated 32-bit key; uint32 words."""
    if len(plain) % 4:
        raise ValueError(f"plaintext length must be a multiple of 4, got {len(plain)}")
    if not 0 <= key < 2**32:
        raise ValueError(f"key must be a 32-bit unsigned int, got {key}")
    words = np.frombuffer(plain, dtype="<u4")
    return words ^ np.uint32(key)


def _lowercase_words(d: np.ndarray) -> np.ndarray:
    b = d.astype("<u4").view(np.uint8).reshape(-1, 4) - np.uint8(97)
    return (b < 26).all(axis=1)


def search_chunk(config: dict) -> dict:
    """Try keys ``start .. start+count-1``: a key fits when it turns every ciphertext word
    into lowercase letters only (the plaintext's last 4 bytes are checked as given).
    Returns the first fitting key or None, and the keys tried."""
    cipher = np.asarray(config["cipher"], dtype=np.uint32)
    start, count = int(config["start"]), int(config["count"])
    keys = np.arange(start, start + count, dtype=np.uint64).astype(np.uint32)
    for w in cipher[:-1]:
        keys = keys[_lowercase_words(keys ^ w)]
        if keys.size == 0:
            break
    tail = np.frombuffer(PLAINTEXT[-4:], dtype="<u4")[0]
    keys = keys[(keys ^ cipher[-1]) == tail]
    return {"key": int(keys[0]) if keys.size else None, "tried": count, "chunk": config["chunk"]}


def key_search(client, cipher: np.ndarray, bits: int, chunk_bits: int) -> dict:
    """The execution monitor: submit one task per chunk of the 2**bits key space (lowest
    keys first by priority), stop every remaining task at the first hit. Returns the
    key, chunks done and submitted, seconds to the hit and from the hit until no task
    was running any more (``stop_s``)."""
    from distributed import as_completed

    if not 1 <= chunk_bits <= bits <= 32:
        raise ValueError(f"need 1 <= chunk_bits <= bits <= 32, got {chunk_bits}, {bits}")
    n_chunks, count = 2 ** (bits - chunk_bits), 2 ** chunk_bits
    cipher = [int(w) for w in cipher]
    t0 = time.perf_counter()
    futures = [client.submit(search_chunk, {"cipher": cipher, "start": i * count,
                                            "count": count, "chunk": i},
                             priority=-i, pure=False) for i in range(n_chunks)]
    found, done, t_hit = None, 0, None
    for f in as_completed(futures):
        done += 1
        r = f.result()
        if r["key"] is not None:
            found, t_hit = r["key"], time.perf_counter()
            client.cancel(futures)
            break
    stop_s = None
    if t_hit is not None:
        # stopped = every worker free again: a probe task pinned to each worker runs only
        # after the chunk it is busy with (a running task cannot be interrupted) ends
        probes = [client.submit(empty_task, {"probe": a}, workers=[a], pure=False,
                                priority=10**9) for a in client.scheduler_info()["workers"]]
        client.gather(probes)
        stop_s = time.perf_counter() - t_hit
    client.cancel(futures)
    return {"key": found, "chunks_done": done, "chunks_total": n_chunks,
            "hit_s": (t_hit - t0) if t_hit else None, "stop_s": stop_s,
            "total_s": time.perf_counter() - t0}


# ---------------------------------------------------------------- faults

def killed_worker_sweep(n_tasks: int, seconds: float, kill_after: int, folder: str,
                        workers: int = 2) -> dict:
    """Run ``n_tasks`` sleep tasks through :func:`grid.sweep` on a local cluster and
    SIGKILL a busy worker process once ``kill_after`` results are checkpointed. Returns
    the results table and counts: results, distinct results, correct results, starts
    (a task started again after the kill counts twice) and the killed pid."""
    ckpt, log = os.path.join(folder, "ckpt"), os.path.join(folder, "log")
    os.makedirs(log, exist_ok=True)
    configs = [{"x": i, "seconds": seconds, "log": log} for i in range(n_tasks)]
    killed: dict[str, Any] = {}
    with grid.dask_client(workers, local=True) as client:  # we kill our own workers
        warm_up(client)
        pids = client.run(os.getpid)  # address -> pid

        def killer():
            deadline = time.time() + 60
            while time.time() < deadline:
                done = len(os.listdir(ckpt)) if os.path.isdir(ckpt) else 0
                busy = [a for a, keys in client.processing().items() if keys and a in pids]
                if done >= kill_after and busy:
                    victim = pids[busy[-1]]  # a worker with a task running right now
                    os.kill(victim, signal.SIGKILL)
                    killed["pid"], killed["at"] = victim, done
                    return
                time.sleep(0.01)

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        df = grid.sweep(sleep_task, configs, key=lambda c: f"x{c['x']}", client=client,
                        checkpoint=ckpt, progress=False, desc="faults")
        th.join(timeout=5)
    ys = df["y"].to_numpy()
    expected = np.arange(n_tasks) ** 2
    return {"table": df.drop(columns=["log"]), "results": len(df),
            "distinct": int(df["x"].nunique()),
            "correct": int((np.sort(ys) == expected).sum()) if len(ys) == n_tasks else 0,
            "starts": len(os.listdir(log)), "killed_pid": killed.get("pid"),
            "killed_after": killed.get("at"),
            "killed_ran": int((df["pid"] == killed.get("pid")).sum())}


def exhausted_failures(folder: str, allowed_failures: int = 1) -> dict:
    """A sweep with one configuration that kills its worker every time: after
    ``allowed_failures`` + 1 deaths Dask gives up (``KilledWorker``) and the sweep raises
    :class:`grid.SweepError`. Returns the message and what the checkpoint kept."""
    configs = [{"x": i, "crash": i == 2} for i in range(4)]
    try:
        with grid.dask_client(1, local=True, allowed_failures=allowed_failures) as client:
            grid.sweep(crash_task, configs, key=lambda c: f"x{c['x']}", client=client,
                       checkpoint=folder, progress=False, desc="crash", retries=0)
    except grid.SweepError as err:
        return {"error": type(err).__name__, "cause": type(err.__cause__).__name__,
                "message": str(err), "kept": grid.Checkpoint(folder).keys()}
    return {"error": None, "cause": None, "message": "", "kept": grid.Checkpoint(folder).keys()}


# ====================================================================== scheduling study

CONSISTENCIES = ("consistent", "semi-consistent", "inconsistent")
#: Braun et al. (2001) range-based ETC: task and machine heterogeneity upper bounds
HETEROGENEITY = {"hihi": (3000.0, 1000.0), "hilo": (3000.0, 10.0),
                 "lohi": (100.0, 1000.0), "lolo": (100.0, 10.0)}
HEURISTICS = ("min_min", "mct", "sufferage", "sa", "sa_minmin", "ga_braun", "ga_modified")
#: the report's penalty table: sums of makespan / worst makespan per matrix
PAPER_PENALTY = {
    "sa_minmin": (6.70564, 3.54590, 2.94299), "min_min": (6.88361, 3.65915, 3.00475),
    "mct": (6.95000, 4.27075, 3.57312), "gsa": (6.80507, 4.30103, 3.49500),
    "sufferage": (6.97664, 4.26640, 3.58922), "ga_braun": (6.59389, 3.46103, 2.88257),
    "ga_modified": (6.46727, 3.40758, 2.86905), "sa": (40.0, 40.0, 40.0)}


def etc_matrix(tasks: int, machines: int, consistency: str = "inconsistent",
               heterogeneity: str = "hihi", seed: int = 0) -> np.ndarray:
    """Braun et al.'s range-based expected-time-to-compute matrix (tasks x machines):
    tau_i ~ U[1, phi_task), ETC[i, j] = tau_i * U[1, phi_machine). Consistent: each row
    sorted (machine 0 fastest for every task); semi-consistent: the even columns of each
    row sorted among themselves, the odd ones left; inconsistent: as drawn."""
    if consistency not in CONSISTENCIES:
        raise ValueError(f"consistency must be one of {CONSISTENCIES}, got {consistency!r}")
    if heterogeneity not in HETEROGENEITY:
        raise ValueError(f"heterogeneity must be one of {tuple(HETEROGENEITY)}, got "
                         f"{heterogeneity!r}")
    if tasks < 1 or machines < 1:
        raise ValueError(f"need tasks >= 1 and machines >= 1, got {tasks} x {machines}")
    phi_t, phi_m = HETEROGENEITY[heterogeneity]
    rng = np.random.default_rng(seed)
    tau = rng.uniform(1, phi_t, size=(tasks, 1))
    etc = tau * rng.uniform(1, phi_m, size=(tasks, machines))
    if consistency == "consistent":
        etc.sort(axis=1)
    elif consistency == "semi-consistent":
        etc[:, 0::2] = np.sort(etc[:, 0::2], axis=1)
    return etc


def _check_etc(etc) -> np.ndarray:
    etc = np.asarray(etc, dtype=float)
    if etc.ndim != 2 or etc.size == 0 or not np.all(np.isfinite(etc)) or np.any(etc < 0):
        raise ValueError("ETC must be a non-empty 2-D array of finite times >= 0, "
                         f"got shape {etc.shape}")
    return etc


def makespan(etc: np.ndarray, assign: np.ndarray) -> float:
    """Largest machine load of one assignment (task i on machine assign[i])."""
    etc = np.asarray(etc)
    loads = np.bincount(assign, weights=etc[np.arange(len(assign)), assign],
                        minlength=etc.shape[1])
    return float(loads.max())


def makespans(etc: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Makespans of a whole population (P x T assignments) in one pass: one bincount
    over P*M bins; the GA's inner loop."""
    pop = np.asarray(population)
    P, T = pop.shape
    M = etc.shape[1]
    times = etc[np.arange(T), pop]
    loads = np.bincount((pop + M * np.arange(P)[:, None]).ravel(), weights=times.ravel(),
                        minlength=P * M).reshape(P, M)
    return loads.max(axis=1)


def makespans_loop(etc: np.ndarray, population: np.ndarray) -> np.ndarray:
    """The same as :func:`makespans` with Python loops: the reference it is checked
    and timed against."""
    out = []
    M = len(etc[0])
    for row in np.asarray(population).tolist():
        loads = [0.0] * M
        for i, m in enumerate(row):
            loads[m] += float(etc[i][m])
        out.append(max(loads))
    return np.array(out)


def mct(etc) -> np.ndarray:
    """Minimum completion time: tasks in index order, each to the machine where it would
    finish first."""
    etc = _check_etc(etc)
    ready = np.zeros(etc.shape[1])
    assign = np.empty(etc.shape[0], dtype=np.int64)
    for i, row in enumerate(etc):
        j = int(np.argmin(ready + row))
        assign[i], ready[j] = j, ready[j] + row[j]
    return assign


def _batch(etc, pick: str) -> np.ndarray:
    etc = _check_etc(etc)
    T, M = etc.shape
    ready = np.zeros(M)
    assign = np.full(T, -1, dtype=np.int64)
    ct = etc.copy()  # completion times, unassigned tasks only
    alive = np.ones(T, dtype=bool)
    for _ in range(T):
        masked = np.where(alive[:, None], ct, np.inf)
        best_m = masked.argmin(axis=1)
        best = masked[np.arange(T), best_m]
        if pick == "min":
            i = int(np.argmin(best))
        else:  # sufferage: second best minus best completion time, largest first
            if M > 1:
                second = np.partition(masked, 1, axis=1)[:, 1]
                with np.errstate(invalid="ignore"):  # inf - inf on assigned rows
                    suff = np.where(alive, second - best, -np.inf)
            else:
                suff = np.where(alive, 0.0, -np.inf)
            i = int(np.argmax(suff))
        j = int(best_m[i])
        assign[i] = j
        ready[j] = best[i]
        alive[i] = False
        ct[:, j] = ready[j] + etc[:, j]
    return assign


def min_min(etc) -> np.ndarray:
    """Min-Min: repeatedly map the task with the smallest minimum completion time to
    that machine (ties: lowest task index, then lowest machine index)."""
    return _batch(etc, "min")


def sufferage(etc) -> np.ndarray:
    """Sufferage, one task per step: map the task that would suffer most (second-best
    minus best completion time) to its best machine. (Maheswaran et al.'s original
    resolves contention per machine within a pass; this common simplification does not.)"""
    return _batch(etc, "sufferage")


def simulated_annealing(etc, init: np.ndarray | None = None, seed: int = 0,
                        cooling: float = 0.9, stall: int = 150) -> tuple[np.ndarray, dict]:
    """Braun et al.'s SA: start from ``init`` (random when None), move one random task to
    a random machine, accept a worse makespan when U[0,1) > 1/(1+exp((old-new)/T)), cool
    T by ``cooling`` per move from T0 = the initial makespan; stop when T < 1e-200 or the
    makespan did not change for ``stall`` moves. Returns the best assignment seen and
    {"evaluations": moves}."""
    etc = _check_etc(etc)
    T_, M = etc.shape
    rng = np.random.default_rng(seed)
    sol = rng.integers(0, M, T_) if init is None else np.array(init, dtype=np.int64)
    loads = np.bincount(sol, weights=etc[np.arange(T_), sol], minlength=M).tolist()
    cur = max(loads)
    best, best_ms, temp, unchanged, moves = sol.copy(), cur, cur, 0, 0
    etc_l = etc.tolist()
    while temp > 1e-200 and unchanged < stall and M > 1:
        moves += 1
        i = int(rng.integers(T_))
        j = int(rng.integers(M - 1))
        old = int(sol[i])
        j = j + (j >= old)
        loads[old] -= etc_l[i][old]
        loads[j] += etc_l[i][j]
        new = max(loads)
        accept = new <= cur
        if not accept:
            z = rng.random()
            with np.errstate(over="ignore"):
                y = 1.0 / (1.0 + np.exp((cur - new) / temp))
            accept = z > y
        if accept:
            sol[i] = j
            unchanged = unchanged + 1 if new == cur else 0
            cur = new
            if cur < best_ms:
                best, best_ms = sol.copy(), cur
        else:
            loads[old] += etc_l[i][old]
            loads[j] -= etc_l[i][j]
            unchanged += 1
        temp *= cooling
    return best, {"evaluations": moves}


def _rank_select(rng, fitness: np.ndarray, n: int) -> np.ndarray:
    """Rank-based roulette: the best of P gets weight P, the worst 1."""
    P = fitness.size
    ranks = np.empty(P)
    ranks[np.argsort(fitness, kind="stable")] = np.arange(P, 0, -1)
    return rng.choice(P, size=n, p=ranks / ranks.sum())


def _crossover(rng, pop: np.ndarray, p: float) -> np.ndarray:
    P, T = pop.shape
    perm = rng.permutation(P)
    a, b = perm[: P // 2], perm[P // 2: 2 * (P // 2)]
    go = rng.random(a.size) < p
    a, b = a[go], b[go]
    if a.size:
        cut = rng.integers(1, T, size=a.size) if T > 1 else np.ones(a.size, int)
        tail = np.arange(T)[None, :] >= cut[:, None]
        pa, pb = pop[a].copy(), pop[b].copy()
        pop[a] = np.where(tail, pb, pa)
        pop[b] = np.where(tail, pa, pb)
    return pop


def ga_braun(etc, seed: int = 0, population: int = 200, p_cross: float = 0.6,
             p_mut: float = 0.4, max_generations: int = 1000, stall: int = 150,
             seeds: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, dict]:
    """Braun et al.'s GA: one chromosome seeded with Min-Min, the rest random; rank
    roulette selection, the elite kept; single-point crossover (p 0.6), mutation moving
    one random task to a random machine (p 0.4); stop after ``max_generations`` or
    ``stall`` generations without a better elite. Returns the elite and
    {"evaluations", "generations"}."""
    etc = _check_etc(etc)
    T, M = etc.shape
    rng = np.random.default_rng(seed)
    pop = rng.integers(0, M, size=(population, T))
    for k, s in enumerate([min_min(etc)] if seeds is None else seeds):
        pop[k] = s
    fit = makespans(etc, pop)
    evals = population
    best_i = int(np.argmin(fit))
    elite, elite_ms = pop[best_i].copy(), float(fit[best_i])
    gen = since = 0
    while gen < max_generations and since < stall:
        gen += 1
        pop = pop[_rank_select(rng, fit, population)]
        pop = _crossover(rng, pop, p_cross)
        mut = np.flatnonzero(rng.random(population) < p_mut)
        pop[mut, rng.integers(0, T, mut.size)] = rng.integers(0, M, mut.size)
        fit = makespans(etc, pop)
        evals += population
        worst = int(np.argmax(fit))
        pop[worst], fit[worst] = elite, elite_ms  # elitism
        b = int(np.argmin(fit))
        if fit[b] < elite_ms:
            elite, elite_ms, since = pop[b].copy(), float(fit[b]), 0
        else:
            since += 1
    return elite, {"evaluations": evals, "generations": gen}


def rebalance(etc, assign: np.ndarray, max_moves: int = 10_000) -> tuple[np.ndarray, int]:
    """Local search: move one task off the most loaded machine to wherever that lowers
    the makespan most; repeat while it does. Returns the assignment and moves tried."""
    etc = _check_etc(etc)
    T, M = etc.shape
    a = np.array(assign, dtype=np.int64)
    loads = np.bincount(a, weights=etc[np.arange(T), a], minlength=M)
    tried = 0
    for _ in range(max_moves):
        top = int(np.argmax(loads))
        ms = loads[top]
        tasks = np.flatnonzero(a == top)
        if tasks.size == 0:
            break
        # new makespan if task t moves to machine j: max(rest, loads[top]-e, loads[j]+e')
        rest = np.partition(loads, -2)[-2] if M > 1 else 0.0
        cand = loads[None, :] + etc[tasks]                     # (k, M) new load of j
        cand[:, top] = np.inf
        new_ms = np.maximum(np.maximum(cand, loads[top] - etc[tasks, top][:, None]), rest)
        tried += new_ms.size
        k, j = np.unravel_index(int(np.argmin(new_ms)), new_ms.shape)
        if new_ms[k, j] >= ms - 1e-12:
            break
        t = tasks[k]
        loads[top] -= etc[t, top]
        loads[j] += etc[t, j]
        a[t] = j
    return a, tried


def ga_modified(etc, seed: int = 0, population: int = 100, p_cross: float = 0.2,
                p_mut: float = 0.4, elite_frac: float = 0.05, stall: int = 100,
                max_generations: int = 1000) -> tuple[np.ndarray, dict]:
    """The report's modified GA: population 100 seeded with Sufferage, MCT and Min-Min,
    top-5 % elitism, swap mutation (two tasks exchange machines, p 0.4), single-point
    crossover (p 0.2), stop after ``stall`` generations without improvement (capped at
    ``max_generations``), then :func:`rebalance`. Selection is not given in the report:
    rank roulette as in Braun's GA."""
    etc = _check_etc(etc)
    T, M = etc.shape
    rng = np.random.default_rng(seed)
    pop = rng.integers(0, M, size=(population, T))
    pop[0], pop[1], pop[2 % population] = sufferage(etc), mct(etc), min_min(etc)
    fit = makespans(etc, pop)
    evals, n_elite = population, max(1, int(round(elite_frac * population)))
    gen = since = 0
    best_ms = float(fit.min())
    while gen < max_generations and since < stall:
        gen += 1
        order = np.argsort(fit, kind="stable")
        elites, elite_fit = pop[order[:n_elite]].copy(), fit[order[:n_elite]].copy()
        pop = pop[_rank_select(rng, fit, population)]
        pop = _crossover(rng, pop, p_cross)
        mut = np.flatnonzero(rng.random(population) < p_mut)
        if mut.size and T > 1:
            i, k = rng.integers(0, T, mut.size), rng.integers(0, T, mut.size)
            pop[mut, i], pop[mut, k] = pop[mut, k], pop[mut, i]
        fit = makespans(etc, pop)
        evals += population
        worst = np.argsort(fit, kind="stable")[-n_elite:]
        pop[worst], fit[worst] = elites, elite_fit
        if fit.min() < best_ms - 1e-12:
            best_ms, since = float(fit.min()), 0
        else:
            since += 1
    best = pop[int(np.argmin(fit))]
    best, tried = rebalance(etc, best)
    return best, {"evaluations": evals, "generations": gen, "rebalance_tried": tried}


def run_heuristics(etc, seed: int = 0, ga_max_generations: int = 1000,
                   heuristics: Sequence[str] = HEURISTICS) -> list[dict]:
    """Every heuristic on one matrix: rows of heuristic, makespan, seconds, evaluations."""
    etc = _check_etc(etc)
    unknown = set(heuristics) - set(HEURISTICS)
    if unknown:
        raise ValueError(f"unknown heuristics {sorted(unknown)}; choose from {HEURISTICS}")
    rows, cache = [], {}
    for h in heuristics:
        t0 = time.perf_counter()
        info: dict = {}
        if h == "min_min":
            a = min_min(etc)
        elif h == "mct":
            a = mct(etc)
        elif h == "sufferage":
            a = sufferage(etc)
        elif h == "sa":
            a, info = simulated_annealing(etc, None, seed)
        elif h == "sa_minmin":
            a, info = simulated_annealing(etc, cache.get("min_min", min_min(etc)), seed)
        elif h == "ga_braun":
            a, info = ga_braun(etc, seed, max_generations=ga_max_generations,
                               seeds=[cache.get("min_min", min_min(etc))])
        else:
            a, info = ga_modified(etc, seed, max_generations=ga_max_generations)
        cache[h] = a
        rows.append({"heuristic": h, "makespan": makespan(etc, a),
                     "seconds": time.perf_counter() - t0,
                     "evaluations": int(info.get("evaluations", 1)),
                     "generations": int(info.get("generations", 0))})
    return rows


def scheduling_task(config: dict) -> list[dict]:
    """One ETC matrix and every heuristic on it (a sweep task)."""
    etc = etc_matrix(config["tasks"], config["machines"], config["consistency"],
                     config["heterogeneity"], config["seed"])
    return run_heuristics(etc, config["seed"], config["ga_max_generations"])


def penalties(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``penalty`` = makespan / worst makespan on the same matrix (the report's score)."""
    keys = ["consistency", "heterogeneity", "seed"]
    worst = table.groupby(keys)["makespan"].transform("max")
    return table.assign(penalty=table["makespan"] / worst)


def relative_table(table: pd.DataFrame) -> pd.DataFrame:
    """Ours beside the report's on a scale that does not depend on the worst heuristic:
    each heuristic relative to Min-Min (ours: mean over matrices of makespan over
    Min-Min's makespan; the report: ratio of its penalty sums)."""
    keys = ["consistency", "heterogeneity", "seed"]
    mm = table[table["heuristic"] == "min_min"].set_index(keys)["makespan"].rename("mm")
    t = table.join(mm, on=keys)
    t = t.assign(rel=t["makespan"] / t["mm"])
    ours = t.pivot_table(index="heuristic", columns="consistency", values="rel",
                         aggfunc="mean")[list(CONSISTENCIES)]
    base = np.array(PAPER_PENALTY["min_min"])
    paper = pd.DataFrame({h: np.array(v) / base for h, v in PAPER_PENALTY.items()},
                         index=[f"paper {c}" for c in CONSISTENCIES]).T
    out = ours.rename(columns=lambda c: f"ours {c}").join(paper, how="outer")
    return out.loc[[h for h in PAPER_PENALTY if h in out.index]]


def penalty_table(table: pd.DataFrame) -> pd.DataFrame:
    """Ours beside the report's: mean penalty per matrix for each heuristic and
    consistency; the report's sums divided by 40, the matrices per column its plain SA's
    40.0 (worst everywhere) implies."""
    ours = table.pivot_table(index="heuristic", columns="consistency", values="penalty",
                             aggfunc="mean")[list(CONSISTENCIES)]
    paper = pd.DataFrame({h: np.array(v) / 40 for h, v in PAPER_PENALTY.items()},
                         index=[f"paper {c}" for c in CONSISTENCIES]).T
    out = ours.rename(columns=lambda c: f"ours {c}").join(paper, how="outer")
    order = [h for h in PAPER_PENALTY if h in out.index]
    return out.loc[order]


def brute_force_optimum(etc) -> tuple[float, np.ndarray]:
    """Exact minimum makespan by enumerating all M**T assignments (tiny matrices only)."""
    etc = _check_etc(etc)
    T, M = etc.shape
    if M ** T > 2_000_000:
        raise ValueError(f"{M}**{T} assignments are too many to enumerate")
    grid_ = np.array(np.meshgrid(*[np.arange(M)] * T, indexing="ij")).reshape(T, -1).T
    ms = makespans(etc, grid_)
    i = int(np.argmin(ms))
    return float(ms[i]), grid_[i]


# ====================================================================== the experiments

ARMS = ("serial", "1 worker", "2 workers")


def sort_experiment(arms: Mapping[str, Any], cfg: "Config") -> pd.DataFrame:
    """The report's workload: ``sort_tasks`` sorts of ``sort_n`` integers per arm and
    repeat (interleaved; see :func:`timed_arms`)."""
    return timed_arms(arms, sort_task, lambda r: sort_configs(cfg.sort_tasks, cfg.sort_n, r),
                      cfg.repeats)


def overhead_experiment(arms: Mapping[str, Any], cfg: "Config") -> pd.DataFrame:
    """Empty tasks in one batch per arm and repeat; ``ms_per_task`` is the engine's cost."""
    t = timed_arms(arms, empty_task, lambda r: [{"i": i, "r": r} for i in range(cfg.empty_tasks)],
                   cfg.repeats)
    return t.assign(ms_per_task=1000 * t["seconds"] / t["tasks"])


def crossover_experiment(arms: Mapping[str, Any], cfg: "Config") -> pd.DataFrame:
    """For each sort size: the serial seconds of one task (``task_ms``, minimum of 3 in
    this process), then ``tasks_per_size`` tasks per arm and repeat."""
    parts = []
    for n in cfg.sizes:
        ms = 1000 * task_seconds(n)
        parts.append(timed_arms(arms, sort_task,
                                lambda r, n=n: sort_configs(cfg.tasks_per_size, n, r),
                                cfg.repeats, label={"n": n, "task_ms": ms}))
    return pd.concat(parts, ignore_index=True)


def speedups(table: pd.DataFrame, base: str = "serial") -> pd.DataFrame:
    """Per task size (and per arm other than ``base``): speed-up over ``base`` from the
    least disturbed repeats (min over min), the median ratio over repeats, and the worst
    interference seen."""
    rows = []
    keys = [k for k in ("n", "task_ms") if k in table]
    groups = table.groupby(keys, sort=True) if keys else [((), table)]
    for key, g in groups:
        wide = g.pivot_table(index="repeat", columns="arm", values="seconds")
        for arm in [a for a in wide.columns if a != base]:
            rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                         "arm": arm, "speedup": wide[base].min() / wide[arm].min(),
                         "speedup_median": float((wide[base] / wide[arm]).median()),
                         "other_busy_max": float(g["other_busy"].max()),
                         "steal_max": float(g["steal"].max())})
    return pd.DataFrame(rows)


def monitor_experiment(client, cfg: "Config") -> list[dict]:
    """``repeats`` key searches with the key near ``key_position`` of the key space; each
    row adds the seconds a full search would take at the measured rate."""
    rows = []
    space = 2 ** cfg.key_bits
    for r in range(cfg.repeats):
        key = (int(cfg.key_position * space) + 7919 * (r + 1) + cfg.seed) % space
        with Interference() as probe:
            m = key_search(client, xor_encrypt(PLAINTEXT, key), cfg.key_bits, cfg.chunk_bits)
        i = probe.result
        m.update(repeat=r, secret=key, found=m["key"] == key, other_busy=i.other_busy,
                 steal=i.steal, psi_cpu=i.psi_cpu,
                 full_search_s=m["hit_s"] / max(m["chunks_done"], 1) * m["chunks_total"]
                 if m["hit_s"] else None)
        rows.append(m)
    return rows


def fault_experiment(cfg: "Config", folder: str) -> list[dict]:
    """``fault_repeats`` sweeps of sleep tasks on a fresh 2-worker cluster each, one
    worker SIGKILLed after a third of the results (:func:`killed_worker_sweep`)."""
    out = []
    for r in range(cfg.fault_repeats):
        f = killed_worker_sweep(cfg.fault_tasks, cfg.fault_task_s,
                                max(1, cfg.fault_tasks // 3), os.path.join(folder, f"run{r}"))
        f.update(n_tasks=cfg.fault_tasks, repeat=r)
        out.append(f)
    return out


def scheduling_configs(cfg: "Config") -> list[dict]:
    return [{"consistency": c, "heterogeneity": h, "seed": cfg.seed + s, "tasks": cfg.etc_tasks,
             "machines": cfg.etc_machines, "ga_max_generations": cfg.ga_max_generations}
            for c in CONSISTENCIES for h in HETEROGENEITY for s in range(cfg.etc_seeds)]


def scheduling_experiment(cfg: "Config", client=None) -> pd.DataFrame:
    """Every heuristic on every ETC matrix, one matrix per task through
    :func:`grid.sweep` (on ``client``'s workers, serially when None), with penalties."""
    df = grid.sweep(scheduling_task, scheduling_configs(cfg), client=client,
                    mode="serial" if client is None else "dask", desc="ETC matrices")
    return penalties(df.drop(columns=["tasks", "machines", "ga_max_generations"]))


def makespan_speed(cfg: "Config", population: int = 200) -> "bench.BenchResult":
    """Vectorised against looped makespan evaluation of one GA population (interleaved
    repeats, seconds per population)."""
    etc = etc_matrix(cfg.etc_tasks, cfg.etc_machines, "inconsistent", "hihi", cfg.seed)
    pop = np.random.default_rng(cfg.seed).integers(0, cfg.etc_machines,
                                                   (population, cfg.etc_tasks))

    def timed(fn):
        def arm():
            t0 = time.perf_counter()
            fn(etc, pop)
            return time.perf_counter() - t0
        return arm
    return bench.interleave({"vectorised": timed(makespans), "loop": timed(makespans_loop)},
                            repeats=max(3, cfg.repeats))


# ====================================================================== config and claims

@dataclass(frozen=True)
class Config(ChapterConfig):
    sort_tasks: int = 50          # the report: 100 tasks
    sort_n: int = 1_000_000       # the report: 10**6 integers per task
    repeats: int = 3              # interleaved repeats of every timed section
    empty_tasks: int = 200
    # 3 x 10^7 integers (about 0.4 s a task here) reaches the speed-up claim's 200 ms
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 30_000_000)
    tasks_per_size: int = 6
    key_bits: int = 32
    chunk_bits: int = 22
    key_position: float = 0.01    # where the secret key lies, as a fraction of the space
    fault_tasks: int = 24
    fault_task_s: float = 0.1
    fault_repeats: int = 2
    etc_tasks: int = 512
    etc_machines: int = 16
    etc_seeds: int = 1            # matrices per consistency x heterogeneity class
    ga_max_generations: int = 1000
    seed: int = 0

    CONSTRAINTS: ClassVar[dict] = {
        "sort_tasks": Range(1, 1000), "sort_n": Range(1, 10**8), "repeats": Range(1, 50),
        "empty_tasks": Range(1, 100_000), "sizes": Range(1, 10**8),
        "tasks_per_size": Range(2, 1000), "key_bits": Range(8, 32), "chunk_bits": Range(4, 30),
        "key_position": Range(0.0, 1.0, hi_open=True), "fault_tasks": Range(4, 10_000),
        "fault_task_s": Range(0.0, 60.0), "fault_repeats": Range(1, 20),
        "etc_tasks": Range(2, 10_000), "etc_machines": Range(2, 1000),
        "etc_seeds": Range(1, 100), "ga_max_generations": Range(1, 100_000),
        "seed": Range(0, 2**31 - 1)}
    NOT_SIZES: ClassVar[tuple] = ("seed", "key_bits", "chunk_bits")

    @classmethod
    def profiles(cls):
        return {
            "smoke": cls(sort_tasks=8, sort_n=200_000, repeats=1, empty_tasks=50,
                         sizes=(1_000, 100_000, 1_000_000), tasks_per_size=4, key_bits=24,
                         chunk_bits=18, key_position=0.1, fault_tasks=10, fault_task_s=0.05,
                         fault_repeats=1, etc_tasks=64, etc_machines=8, etc_seeds=1,
                         ga_max_generations=60),
            "cpu": cls(),
            "gpu": cls(sort_tasks=100, repeats=5, tasks_per_size=20, etc_seeds=10,
                       fault_repeats=3),
        }

    def validate(self) -> None:
        require(len(self.sizes) >= 2 and list(self.sizes) == sorted(set(self.sizes)),
                f"sizes needs at least two increasing sort sizes, got {self.sizes}")
        require(self.chunk_bits <= self.key_bits,
                f"chunk_bits ({self.chunk_bits}) must be <= key_bits ({self.key_bits})")
        require(self.fault_tasks >= 4, "fault_tasks must be >= 4 to kill a worker mid-run")


SPEEDUP_MIN_TASK_S = 0.2     # the speed-up claim is about tasks of 200 ms or more
SPEEDUP_THRESHOLD = 1.7
QUIET = bench.DEFAULT_RULE   # the timing verdicts need a quiet machine (bench's rule)

CLAIMS = claims_catalog(
    Claim("setup-minutes", "The framework is set up on a LAN in minutes, where grid toolkits "
          "take man-months", "time to a working cluster",
          Untestable("a LAN installation by a team; we time only a loopback Dask cluster"),
          origin=paper("abstract"), paper_value="minutes, against several man-months"),
    Claim("sort-100-tasks", "100 tasks sorting 10^6 integers each finish in 53.285 s end to "
          "end", "wall seconds",
          Untestable("the report gives no node count, so no speed-up follows; our scaled "
                     "time is shown beside it"),
          origin=paper("project report, results"), paper_value="53.285 s"),
    Claim("overhead-below-5ms", "Dask's overhead per task stays below 5 ms on this machine",
          "ms per empty task on 2 workers, per repeat", Rule(5.0, "below"),
          origin=related("Dask best practices: 200 us to 1 ms per task; 5 ms allows for a "
                         "shared 2-core machine"),
          paper_value=None),
    Claim("speedup-2-workers", "2 Dask workers run tasks of 200 ms or more at least 1.7x "
          "faster than serial on 2 cores", "serial / 2-worker wall time, interleaved repeats",
          Rule(SPEEDUP_THRESHOLD, "above"),
          origin=ours("the issue's target for 2 cores shared by client, scheduler and "
                      "workers"), paper_value=None),
    Claim("killed-worker-no-loss", "A worker killed mid-run loses no result: every result "
          "arrives once and is correct", "fraction of results present, unique and correct, "
          "per killed run", Rule(0.999, "above", min_n=1),
          origin=paper("project report, fault tolerance: failed tasks are requeued"),
          paper_value=None),
    Claim("monitor-stops", "The execution monitor stops every remaining task at the first "
          "hit (here: within 1 s)", "seconds from the hit until no task runs",
          Rule(1.0, "below", min_n=1),
          origin=paper("project report, execution monitor (XOR key search demo); the 1 s "
                       "bound is ours"), paper_value=None),
    Claim("minmin-beats-mct", "Min-Min schedules better than MCT",
          "penalty(MCT) - penalty(Min-Min), paired per matrix", Rule(0.0),
          origin=paper("project report, penalty table"),
          paper_value="6.88 vs 6.95, 3.66 vs 4.27, 3.00 vs 3.57 (sums)"),
    Claim("ga-modified-beats-braun", "The modified GA schedules better than Braun's GA",
          "penalty(Braun GA) - penalty(modified GA), paired per matrix", Rule(0.0),
          origin=paper("project report, penalty table"),
          paper_value="6.47 vs 6.59, 3.41 vs 3.46, 2.87 vs 2.88 (sums)"),
    Claim("plain-sa-worst", "Plain simulated annealing is the worst heuristic on every matrix",
          "penalty(plain SA) - worst other penalty, per matrix", Rule(0.0),
          origin=paper("project report, penalty table"),
          paper_value="40.0 of 40 in every column"),
    Claim("ga-modified-faster", "The modified GA runs 45-51 % faster than Braun's GA",
          "modified / Braun GA seconds, ratio of means over matrices", Rule(1.0, "below"),
          origin=paper("project report, scheduling simulation"),
          paper_value="45-51 % faster (0.49-0.55x the time)"),
)


def speedup_samples(table: pd.DataFrame) -> dict | None:
    """Serial and 2-worker seconds per repeat at the largest task size whose serial task
    takes >= 200 ms (from the crossover table), with the worst interference seen in
    those repeats; None when no size is that large. Other processes' CPU and steal come
    from both arms (our workers are not counted there); CPU pressure only from the
    serial arm: two workers on two cores, with the scheduler and this process beside
    them, make their own pressure, which says nothing about other tenants."""
    big = table[table["task_ms"] >= 1000 * SPEEDUP_MIN_TASK_S]
    if big.empty:
        return None
    size = int(big["n"].max())
    t = table[table["n"] == size]
    wide = t.pivot_table(index="repeat", columns="arm", values="seconds")
    return {"n": size, "task_ms": float(t["task_ms"].iloc[0]),
            "serial": wide["serial"].to_numpy(), "parallel": wide["2 workers"].to_numpy(),
            "other_busy": float(t["other_busy"].max()), "steal": float(t["steal"].max()),
            "psi_cpu": _max_or_none(t.loc[t["arm"] == "serial", "psi_cpu"])}


def _max_or_none(values: pd.Series) -> float | None:
    return None if values.isna().all() else float(values.max())


def loaded(row: Mapping) -> list[str]:
    """Why the timed section behind a row (or a summary of rows) was not quiet."""
    i = bench.Interference(1.0, row["other_busy"], row["steal"], row.get("psi_cpu"), 0.0,
                           os.cpu_count() or 1)
    return i.reasons(QUIET)


def measure(results: Mapping[str, Any]) -> dict[str, Measurement]:
    """One Measurement per claim from the chapter's results: ``sort`` (timed arms),
    ``overhead`` (empty tasks), ``crossover`` (sizes x arms), ``monitor`` (key searches),
    ``faults`` (killed-worker runs), ``scheduling`` (heuristic rows with penalties)."""
    out: dict[str, Measurement] = {}
    setup = results.get("setup_s")
    out["setup-minutes"] = Measurement(None, f"a 2-worker loopback cluster started in "
                                             f"{setup:.1f} s" if setup else "")
    sort = results["sort"]
    serial_s = sort[sort["arm"] == "serial"]["seconds"].min()
    per100 = serial_s / sort["tasks"].iloc[0] * 100
    out["sort-100-tasks"] = Measurement(None, f"ours: {serial_s:.2f} s for "
                                              f"{sort['tasks'].iloc[0]} tasks serially, "
                                              f"{per100:.1f} s per 100 tasks")
    ov = results["overhead"]
    ov2 = ov[ov["arm"] == "2 workers"]
    est = mean_ci(ov2["ms_per_task"].to_numpy())
    why = loaded(ov2.max(numeric_only=True)) if "other_busy" in ov2 else []
    # interference only adds time: a bound that holds under load holds on a quiet
    # machine, but a miss under load says nothing, so only a miss is withheld
    if why and not est.ci_high < 5.0:
        out["overhead-below-5ms"] = Measurement(None, f"{est.mean:.2f} ms per task measured; "
                                                "withheld: machine loaded (" + "; ".join(why)
                                                + ")")
    else:
        out["overhead-below-5ms"] = Measurement(est, "empty tasks submitted in one batch" +
                                                ("; under load, so an upper bound" if why else ""))
    sp = speedup_samples(results["crossover"])
    if sp is None:
        out["speedup-2-workers"] = Measurement(None, "no task size reached 200 ms here")
    else:
        est = bootstrap_ratio(sp["serial"], sp["parallel"])
        why = loaded(sp)
        note = (f"sort tasks of {sp['n']:,} integers ({sp['task_ms']:.0f} ms each); "
                f"speed-up {est.mean:.2f}x")
        if why:
            out["speedup-2-workers"] = Measurement(None, note + "; withheld: machine loaded "
                                                   "during the timed section (" +
                                                   "; ".join(why) + ")")
        else:
            out["speedup-2-workers"] = Measurement(est, note + "; machine quiet")
    faults = results["faults"]
    frac = [f["correct"] / f["n_tasks"] if f["results"] == f["distinct"] == f["n_tasks"]
            else 0.0 for f in faults]
    reruns = sum(f["starts"] - f["n_tasks"] for f in faults)
    out["killed-worker-no-loss"] = Measurement(
        mean_ci(frac) if len(frac) > 1 else point(frac[0]),
        f"{len(faults)} run(s), one busy worker SIGKILLed each; {reruns} task(s) started "
        "again elsewhere")
    mon = [m for m in results["monitor"] if m["stop_s"] is not None]
    if not mon:
        out["monitor-stops"] = Measurement(None, "the key was not found")
    else:
        est = (mean_ci if len(mon) > 1 else lambda v: point(v[0]))([m["stop_s"] for m in mon])
        share = np.mean([m["chunks_done"] / m["chunks_total"] for m in mon])
        why = loaded(pd.DataFrame(mon).max(numeric_only=True)) if "other_busy" in mon[0] else []
        note = f"searched {share:.1%} of the key space on average"
        if why and not est.ci_high < 1.0:  # as for the overhead: only a miss is withheld
            out["monitor-stops"] = Measurement(None, f"{note}; {est.mean:.2f} s to stop; "
                                               "withheld: machine loaded (" + "; ".join(why)
                                               + ")")
        else:
            out["monitor-stops"] = Measurement(est, note + ("; under load, so an upper bound"
                                                            if why else ""))
    sch = results["scheduling"]
    wide = sch.pivot_table(index=["consistency", "heterogeneity", "seed"],
                           columns="heuristic", values="penalty")
    secs = sch.pivot_table(index=["consistency", "heterogeneity", "seed"],
                           columns="heuristic", values="seconds")
    n = len(wide)
    out["minmin-beats-mct"] = Measurement(paired_diff(wide["mct"], wide["min_min"]),
                                          f"{n} matrices")
    out["ga-modified-beats-braun"] = Measurement(
        paired_diff(wide["ga_braun"], wide["ga_modified"]), f"{n} matrices")
    others = wide.drop(columns=["sa"]).max(axis=1)
    out["plain-sa-worst"] = Measurement(
        mean_ci((wide["sa"] - others).to_numpy()),
        f"plain SA worst on {int((wide['sa'] >= others).sum())} of {n} matrices")
    out["ga-modified-faster"] = Measurement(
        bootstrap_ratio(secs["ga_modified"].to_numpy(), secs["ga_braun"].to_numpy()),
        "wall time on the same worker, same matrix; both capped at "
        f"{results.get('ga_max_generations', '?')} generations")
    return out
