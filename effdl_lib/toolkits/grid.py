"""The Dask runner: one function fanned out over configurations, on this machine or a cluster.

    from effdl_lib.toolkits.grid import sweep
    table = sweep(train_one, [{"seed": s, "arm": a} for s in range(5) for a in ("kd", "wd")],
                  checkpoint="build/sweeps/04", workers=2)

``sweep`` runs ``fn(config)`` for every configuration and returns one tidy
:class:`pandas.DataFrame` (the configuration's fields, then the result's), in the order
the configurations were given, whatever order they finished in. Where it runs:

- ``mode="dask"`` (the default): on a Dask ``LocalCluster`` of ``workers`` processes with
  one thread each, bound to loopback, without a dashboard; or, when ``scheduler=`` or the
  environment variable ``EFFDL_SCHEDULER=tcp://host:port`` names one, on an existing
  scheduler (``dask scheduler`` and ``dask worker tcp://host:port`` on each machine).
- ``mode="serial"`` (or ``EFFDL_GRID=serial``): in this process, one after another, for
  debugging and for notebook validation.

With ``checkpoint=DIR`` every result is pickled to ``DIR/<key>.pkl`` as soon as it
arrives, so a sweep that is interrupted and restarted computes only the missing keys.
Lost workers are handled by Dask (the task is rescheduled on another worker, at most
``allowed_failures`` times, then :class:`SweepError`); ordinary exceptions inside ``fn``
are retried ``retries`` times. :func:`run_chapters` is the book's runner: one chapter
per worker process, a status per chapter. Explained in the book's chapter 10
(``notebooks/10_grid.py``).
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import pickle
import re
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pandas as pd

SCHEDULER_ENV = "EFFDL_SCHEDULER"
MODE_ENV = "EFFDL_GRID"
#: processes a chapter may fan its own seeds out to on this machine (``make book`` sets 1
#: for chapters that already share the cores with another chapter)
WORKERS_ENV = "EFFDL_WORKERS"
MODES = ("dask", "serial")
#: environment of every worker process: one thread for BLAS/OpenMP/torch
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "EFFDL_THREADS": "1", "EFFDL_QUIET": "1"}
_KEY_RE = re.compile(r"^[A-Za-z0-9_.=+-]{1,120}$")


class SweepError(RuntimeError):
    """A configuration failed for good (its exception after the retries, or its worker
    died more than ``allowed_failures`` times). Finished results stay checkpointed."""


def chapter_workers(device: Any = "cpu") -> int:
    """How many processes a chapter's own sweep should use: ``$EFFDL_WORKERS`` if set, else
    one per core; 1 (in process) when the chapter runs on an accelerator, which the
    worker processes would have to share. With a scheduler (``$EFFDL_SCHEDULER``) the
    sweep runs on the cluster's workers whatever this says."""
    if str(device) != "cpu":
        return 1
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return max(1, os.cpu_count() or 1)
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"${WORKERS_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


def chapter_mode(workers: int) -> str:
    """The sweep mode for a chapter's own sweep: in process for one worker and no
    scheduler (same numbers, no start-up cost), else Dask."""
    if os.environ.get(MODE_ENV):
        return os.environ[MODE_ENV]
    return "serial" if workers == 1 and not os.environ.get(SCHEDULER_ENV) else "dask"


# ------------------------------------------------------------------ keys and checkpoints

def config_key(config: Mapping[str, Any]) -> str:
    """A stable key for a configuration: 16 hex digits of the SHA-256 of its sorted JSON."""
    blob = json.dumps(dict(config), sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpoint:
    """One pickle per finished key in a folder, written atomically (temp file + rename),
    so a killed sweep leaves only whole results behind."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pkl"

    def __contains__(self, key: str) -> bool:
        return self.path(key).exists()

    def load(self, key: str) -> Any:
        with open(self.path(key), "rb") as fh:
            return pickle.load(fh)

    def save(self, key: str, result: Any) -> None:
        tmp = self.folder / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.path(key))

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.pkl"))


# ------------------------------------------------------------------ clusters

def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: the argument, else ``$EFFDL_SCHEDULER``, else None (local)."""
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address is not None and not re.match(r"^(tcp|tls|inproc|ucx)://\S+$", address):
        raise ValueError(f"scheduler address must look like tcp://host:port, got {address!r} "
                         f"(from {'the argument' if scheduler else '$' + SCHEDULER_ENV})")
    return address


@contextlib.contextmanager
def dask_client(workers: int = 2, scheduler: str | None = None, *, local: bool = False,
                allowed_failures: int | None = None, memory_limit: str | int = "auto",
                connect_timeout: float = 30) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``scheduler`` / ``$EFFDL_SCHEDULER`` if set,
    else to a new ``LocalCluster`` (``workers`` processes, one thread each, loopback,
    random port, no dashboard, one task per worker at a time) that is shut down on
    exit, client first. ``local=True`` always starts the LocalCluster, whatever
    ``$EFFDL_SCHEDULER`` says (experiments that time or kill their own workers)."""
    from distributed import Client, LocalCluster

    if local and scheduler:
        raise ValueError("local=True starts its own cluster; do not pass a scheduler")
    address = None if local else scheduler_address(scheduler)
    if address:
        client = Client(address, timeout=connect_timeout)
        try:
            yield client
        finally:
            client.close()
        return
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    # no dashboard; the scheduler's small HTTP server (health checks) on a random
    # loopback port instead of 8787, which another cluster on the machine may hold
    sched_kwargs = {"dashboard_address": "127.0.0.1:0"}
    if allowed_failures is not None:
        sched_kwargs["allowed_failures"] = int(allowed_failures)
    import dask
    # A worker gets a task only when its thread is free (Dask's default queues one more):
    # long tasks never wait behind each other on one worker while another idles, and a
    # worker that dies takes only the task it was running with it. The config stays set
    # while the cluster lives, so a worker the nanny restarts gets the same environment.
    # Dask's nannies write their pre-spawn variables (OMP_NUM_THREADS=1, PYTHONHASHSEED)
    # into this process's environment too; put it back afterwards, so whatever this
    # process starts later (the book's next chapters) does not inherit them.
    saved_environ = dict(os.environ)
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0,
                          "distributed.nanny.pre-spawn-environ": worker_spawn_environ()}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", scheduler_port=0, dashboard_address=None,
                               worker_dashboard_address=None, memory_limit=memory_limit,
                               silence_logs=logging.CRITICAL, env=dict(WORKER_ENV),
                               scheduler_kwargs=sched_kwargs)
        try:
            client = Client(cluster, timeout=connect_timeout)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
            os.environ.clear()
            os.environ.update(saved_environ)


def worker_spawn_environ() -> dict:
    """Dask's environment for new worker processes, without ``MALLOC_TRIM_THRESHOLD_``.
    Dask sets it to 64 KiB so workers hand freed memory back to the system at once; it
    also fixes glibc's mmap threshold, so every large tensor torch frees and allocates
    again is a fresh mmap and its pages fault in anew. Measured here: a blind-student
    task of chapter 01 (CIFAR patches, one seed) took 7.3 s of CPU in a worker with it
    and 4.0 s without (4.0 s in the notebook's own process)."""
    import dask
    import distributed  # noqa: F401  (loads the distributed.* defaults)
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def _one_thread() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _call(fn: Callable[[dict], Any], config: dict) -> Any:
    """What runs on a worker: one thread, then fn(config)."""
    _one_thread()
    return fn(config)


# ------------------------------------------------------------------ the sweep

def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm import tqdm
    from ..runtime import is_quiet
    disable = is_quiet() if enabled is None else not enabled
    return tqdm(total=total, desc=desc, disable=disable, leave=False)


class _Failed(str):
    """The error text of a configuration that failed under errors="record"."""


def _rows(config: dict, result: Any) -> list[dict]:
    if isinstance(result, _Failed):
        return [{**config, "error": str(result)}]
    items = result if isinstance(result, list) else [result]
    rows = []
    for item in items:
        if not isinstance(item, Mapping):
            item = {"value": item}
        clash = set(item) & set(config)
        if clash:
            raise ValueError(f"result fields {sorted(clash)} have the names of configuration "
                             f"fields; rename them")
        rows.append({**config, **item})
    return rows


def sweep(fn: Callable[[dict], Any], configs: Iterable[Mapping[str, Any]], *,
          key: Callable[[dict], str] | None = None, mode: str | None = None,
          workers: int = 2, scheduler: str | None = None, client: Any = None,
          checkpoint: str | os.PathLike | None = None, retries: int = 1,
          allowed_failures: int | None = None, progress: bool | None = None,
          desc: str = "sweep", priority: Callable[[dict], int] | None = None,
          errors: str = "raise") -> pd.DataFrame:
    """Run ``fn(config)`` for each configuration; return a tidy DataFrame in input order.

    fn: a picklable function of one dict; it returns a dict (one row), a list of dicts
      (several rows) or a scalar (column ``value``).
    key: configuration -> key (letters, digits, ``_.=+-``); default :func:`config_key`.
      Keys must be unique; they name the checkpoint files.
    mode: "dask" or "serial"; default ``$EFFDL_GRID`` or "dask".
    workers: LocalCluster size when no scheduler is given; ignored with ``client``.
    scheduler / client: an existing scheduler address or ``distributed.Client``.
    checkpoint: folder of finished results; keys found there are not run again (an
      unreadable file is recomputed with a warning). The key must change when fn does.
    retries: re-runs of a configuration whose fn raised (Dask's ``retries=``).
    allowed_failures: worker deaths a task may cause before it is given up (local cluster
      only; a remote scheduler keeps its own ``distributed.scheduler.allowed-failures``).
    priority: configuration -> Dask priority (higher first); default input order.
    errors: "raise" (:class:`SweepError` at the first configuration that fails for good,
      the rest cancelled) or "record" (its row gets the text in column ``error``; failed
      configurations are not checkpointed, so a restart tries them again).

    ``df.attrs`` holds ``computed`` and ``from_checkpoint`` (counts) and ``seconds``.
    """
    mode = mode or os.environ.get(MODE_ENV) or "dask"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    configs = [dict(c) if isinstance(c, Mapping) else _bad_config(i, c)
               for i, c in enumerate(configs)]
    keys = [(key or config_key)(c) for c in configs]
    for k in keys:
        if not isinstance(k, str) or not _KEY_RE.match(k):
            raise ValueError(f"key {k!r} is not a safe file name (letters, digits, _.=+-)")
    dupes = sorted(k for k, n in collections.Counter(keys).items() if n > 1)
    if dupes:
        raise ValueError(f"configurations with duplicate keys: {dupes[:5]}")
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    results: dict[str, Any] = {}
    if store is not None:
        for k in keys:
            if k in store:
                try:
                    results[k] = store.load(k)
                except Exception as exc:  # noqa: BLE001 - unreadable: compute it again
                    warnings.warn(f"checkpoint {store.path(k)} is unreadable "
                                  f"({type(exc).__name__}); recomputing key {k}")
    from_checkpoint = len(results)
    todo = [(k, c) for k, c in zip(keys, configs) if k not in results]
    t0 = time.perf_counter()
    bar = _progress(len(todo), desc, progress)
    try:
        if todo and mode == "serial" and client is None:
            for k, c in todo:
                try:
                    results[k] = _serial_call(fn, k, c, retries, len(results), store)
                except SweepError as exc:
                    if errors == "raise":
                        raise
                    results[k] = _Failed(str(exc))
                else:
                    if store is not None:
                        store.save(k, results[k])
                bar.update()
        elif todo:
            with contextlib.ExitStack() as stack:
                if client is None:
                    client = stack.enter_context(dask_client(
                        workers, scheduler, allowed_failures=allowed_failures))
                _run_dask(client, fn, todo, results, store, retries, priority, bar, desc,
                          errors)
    finally:
        bar.close()
    rows = [row for k, c in zip(keys, configs) for row in _rows(c, results[k])]
    df = pd.DataFrame(rows)
    df.attrs.update(computed=len(todo), from_checkpoint=from_checkpoint,
                    seconds=time.perf_counter() - t0)
    return df


def _bad_config(i: int, c: Any):
    raise TypeError(f"configuration {i} must be a mapping (dict), got {type(c).__name__} {c!r}")


def _serial_call(fn, k, c, retries, n_done, store):
    for attempt in range(retries + 1):
        try:
            return _call(fn, c)
        except Exception as exc:  # noqa: BLE001 - reported with the configuration
            if attempt == retries:
                raise SweepError(_failure_text(k, c, exc, n_done, store)) from exc


def _failure_text(k, c, exc, n_done, store) -> str:
    where = f"; {n_done} finished results are checkpointed in {store.folder}" if store else ""
    return f"configuration {c} (key {k}) failed: {type(exc).__name__}: {exc}{where}"


def _run_dask(client, fn, todo, results, store, retries, priority, bar, desc, errors) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = {}
    for i, (k, c) in enumerate(todo):
        prio = priority(c) if priority else -i  # earlier configurations first
        f = client.submit(_call, fn, c, key=f"{desc}-{k}-{token}", retries=retries,
                          pure=False, priority=prio)
        futures[f.key] = (f, k, c)
    try:
        for f in as_completed([v[0] for v in futures.values()]):
            _, k, c = futures[f.key]
            try:
                result = f.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker or fn's own error
                text = _failure_text(k, c, exc, len(results), store)
                if errors == "raise":
                    raise SweepError(text) from exc
                result = _Failed(text)
            if k in results:
                raise SweepError(f"key {k} arrived twice")  # cannot happen with unique keys
            results[k] = result
            if store is not None and not isinstance(result, _Failed):
                store.save(k, result)
            bar.update()
            f.release()
    finally:
        client.cancel([v[0] for v in futures.values()])


# ------------------------------------------------------------------ the book's runner

def _chapter_task(config: dict) -> dict:
    run_one, chapter = config["run_one"], config["chapter"]
    t0 = time.perf_counter()
    try:
        status = run_one(chapter)
    except Exception as exc:  # noqa: BLE001 - one chapter's crash must not stop the others
        status = f"error: {type(exc).__name__}: {exc}"
    return {"status": status, "seconds": round(time.perf_counter() - t0, 1), "pid": os.getpid()}


def run_chapters(run_one: Callable[[str], Any], chapters: Sequence[str], jobs: int = 2, *,
                 scheduler: str | None = None, progress: bool | None = None) -> pd.DataFrame:
    """Run ``run_one(chapter)`` for each chapter, ``jobs`` at a time in worker processes
    (serially in this process when ``jobs == 1`` and no scheduler is set).

    ``run_one`` executes one chapter (papermill) and returns its status (0 for success);
    an exception becomes the status ``"error: ..."`` so one chapter cannot stop the others.
    Returns a DataFrame (chapter, status, seconds, pid) in the chapters' order, with
    ``attrs["seconds"]`` the wall time of the whole run. Every chapter is attempted once:
    re-running a notebook is the pipeline's decision, not the runner's.
    """
    chapters = [str(c) for c in chapters]
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    if len(set(chapters)) != len(chapters):
        raise ValueError(f"chapters listed twice: {sorted({c for c in chapters if chapters.count(c) > 1})}")
    empty = pd.DataFrame(columns=["chapter", "status", "seconds", "pid"])
    if not chapters:
        empty.attrs["seconds"] = 0.0
        return empty
    remote = scheduler_address(scheduler)
    serial = jobs == 1 and remote is None
    t0 = time.perf_counter()
    df = sweep(_chapter_task, [{"chapter": c, "run_one": run_one} for c in chapters],
               key=lambda c: re.sub(r"[^A-Za-z0-9_.=+-]", "_", Path(c["chapter"]).stem)
               + "-" + config_key({"c": c["chapter"]})[:6],
               mode="serial" if serial else "dask", workers=min(jobs, len(chapters)),
               scheduler=remote, retries=0, allowed_failures=0, progress=progress,
               desc="chapters", errors="record")
    if "error" in df:  # the worker died (out of memory, a crash in C): that is its status
        failed = df["error"].notna()
        df.loc[failed, "status"] = "error: " + df.loc[failed, "error"].astype(str)
    df = df.drop(columns=["run_one"])[["chapter", "status", "seconds", "pid"]]
    df.attrs["seconds"] = time.perf_counter() - t0
    return df
