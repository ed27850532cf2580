"""The timing toolkit: interleaved repeats, robust summaries, interference, hardware.

Chapters that time code (02, 03, 06-10) use it the same way::

    from effdl_lib.toolkits import bench
    res = bench.interleave({"numpy": f, "loop": g}, repeats=7)   # every arm once per repeat
    res.summary()                          # min, low quantile, median per arm and metric
    res.ratio("loop", "numpy")             # paired bootstrap ratio over repeats
    res.interference.quiet()               # was the machine quiet while we timed?
    res.gate()                             # None, or why a timing verdict must be withheld

Interference is measured *during* the timed section, not guessed from the load average
(which is a one-minute mean that mostly describes what ran before): the share of the
other cores' time that was busy (``/proc/stat``, our own CPU time subtracted), CPU time
stolen by the hypervisor, and the kernel's CPU pressure (``/proc/pressure/cpu``, where
the kernel has PSI).  Interference only ever adds time, so the minimum or a low quantile
of interleaved repeats is the estimate to report, and a ratio is taken within one run.
Rotating the order of the arms each repeat makes slow drifts of the machine hit all arms
alike.  Tests assert on these deterministic pieces (parsers, rules, summaries); no test
asserts on wall time.

Which chapter explains it: chapter 02 (Fast Bitmap Fit), section "How we time".
"""
from __future__ import annotations

import math
import os
import platform
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..stats import Estimate, bootstrap_ratio

__all__ = [
    "CpuSample", "QuietRule", "Interference", "Monitor", "BenchResult", "cpu_sample",
    "interference_between", "wait_for_quiet", "interleave", "low_quantile", "summarize",
    "hardware", "cache_levels", "last_level_cache_bytes", "find_cliff", "thread_info",
    "thp_mode", "geometric_sizes", "time_ns", "parse_proc_stat", "parse_psi",
    "DEFAULT_RULE", "DEFAULT_QUANTILE",
]

#: the low quantile reported beside the minimum (0.2 of 5 repeats lies between the two
#: fastest)
DEFAULT_QUANTILE = 0.2
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# ------------------------------------------------------------------ interference probes

@dataclass(frozen=True)
class CpuSample:
    """One reading of the counters interference is computed from."""
    t: float                    # time.monotonic()
    busy: int                   # jiffies, all CPUs: user+nice+system+irq+softirq
    total: int                  # jiffies, all CPUs: busy + idle + iowait + steal
    steal: int                  # jiffies stolen by the hypervisor, all CPUs
    ncpu: int                   # CPUs listed in /proc/stat
    own_cpu_s: float            # this process and its waited-for children, user+system
    psi_some_us: int | None     # /proc/pressure/cpu "some" total (None without PSI)
    loadavg: tuple[float, float, float] | None


def parse_proc_stat(text: str) -> tuple[int, int, int, int]:
    """(busy, total, steal, ncpu) jiffies from the text of /proc/stat (aggregate line)."""
    agg, ncpu = None, 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu":
            agg = [int(x) for x in parts[1:]]
        elif parts[0].startswith("cpu") and parts[0][3:].isdigit():
            ncpu += 1
    if agg is None or len(agg) < 4:
        raise ValueError("no aggregate 'cpu' line with at least 4 fields in /proc/stat text")
    agg = agg + [0] * (8 - len(agg))
    user, nice, system, idle, iowait, irq, softirq, steal = agg[:8]
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal, steal, max(ncpu, 1)


def parse_psi(text: str) -> int | None:
    """The "some" total (microseconds) of a /proc/pressure/* file, or None."""
    for line in text.splitlines():
        if line.startswith("some "):
            for tok in line.split()[1:]:
                if tok.startswith("total="):
                    return int(tok[len("total="):])
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _own_cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_sample(proc: str | Path = "/proc", own_cpu_s: float | None = None) -> CpuSample:
    """Read the counters now.  ``proc`` and ``own_cpu_s`` exist for tests."""
    proc = Path(proc)
    stat = _read(proc / "stat")
    if stat is None:
        raise OSError(f"cannot read {proc / 'stat'}: interference cannot be measured here")
    busy, total, steal, ncpu = parse_proc_stat(stat)
    psi_text = _read(proc / "pressure" / "cpu")
    load = _read(proc / "loadavg")
    loadavg = tuple(float(x) for x in load.split()[:3]) if load else None
    return CpuSample(time.monotonic(), busy, total, steal, ncpu,
                     _own_cpu_s() if own_cpu_s is None else own_cpu_s,
                     parse_psi(psi_text) if psi_text else None, loadavg)


@dataclass(frozen=True)
class QuietRule:
    """When a timed section counts as undisturbed.  Fixed before the run.

    max_other_busy: share of the *other* cores' time spent busy (our process removed).
    max_steal: share of all CPU time stolen by the hypervisor.
    max_psi: share of wall time during which some runnable task waited for a CPU.
    On a machine with one CPU, other_busy is the share of our core others took."""
    max_other_busy: float = 0.15
    max_steal: float = 0.05
    max_psi: float = 0.10

    def __post_init__(self):
        for name in ("max_other_busy", "max_steal", "max_psi"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")

    @property
    def text(self) -> str:
        return (f"quiet if other cores busy <= {self.max_other_busy:.0%}, steal <= "
                f"{self.max_steal:.0%} and CPU pressure <= {self.max_psi:.0%} during the "
                "timed section")


DEFAULT_RULE = QuietRule()


@dataclass(frozen=True)
class Interference:
    """What else the machine did while we timed (fractions in [0, 1])."""
    wall_s: float
    other_busy: float              # busy share of the other cores
    steal: float                   # stolen share of all CPU time
    psi_cpu: float | None          # CPU pressure "some" share of wall time
    own_cpu_s: float               # CPU seconds of this process (and children) meanwhile
    ncpu: int
    loadavg_before: tuple[float, float, float] | None = None
    loadavg_after: tuple[float, float, float] | None = None

    def reasons(self, rule: QuietRule = DEFAULT_RULE) -> list[str]:
        """Why the section was not quiet under ``rule`` (empty when it was)."""
        out = []
        if self.other_busy > rule.max_other_busy:
            out.append(f"other cores {self.other_busy:.0%} busy (limit {rule.max_other_busy:.0%})")
        if self.steal > rule.max_steal:
            out.append(f"{self.steal:.0%} of CPU time stolen (limit {rule.max_steal:.0%})")
        if self.psi_cpu is not None and self.psi_cpu > rule.max_psi:
            out.append(f"CPU pressure {self.psi_cpu:.0%} (limit {rule.max_psi:.0%})")
        return out

    def quiet(self, rule: QuietRule = DEFAULT_RULE) -> bool:
        return not self.reasons(rule)

    def describe(self) -> str:
        psi = "n/a" if self.psi_cpu is None else f"{self.psi_cpu:.0%}"
        load = ""
        if self.loadavg_before and self.loadavg_after:
            load = (f", load average {self.loadavg_before[0]:.2f} before and "
                    f"{self.loadavg_after[0]:.2f} after")
        return (f"over {self.wall_s:.1f} s: other cores {self.other_busy:.0%} busy, steal "
                f"{self.steal:.0%}, CPU pressure {psi}{load}")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("loadavg_before", "loadavg_after"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d


def interference_between(a: CpuSample, b: CpuSample) -> Interference:
    """Interference over the interval from sample ``a`` to sample ``b``."""
    wall = max(b.t - a.t, 1e-9)
    total = max(b.total - a.total, 0)
    busy = max(b.busy - a.busy, 0)
    own = max(b.own_cpu_s - a.own_cpu_s, 0.0) * _CLK_TCK
    ncpu = b.ncpu
    if total <= 0:
        other = steal = 0.0
    else:
        # the other cores' capacity: (ncpu - 1) / ncpu of all jiffies; one CPU: all of it
        capacity = total * (ncpu - 1) / ncpu if ncpu > 1 else total
        other = min(max((busy - own) / capacity, 0.0), 1.0)
        steal = min(max((b.steal - a.steal) / total, 0.0), 1.0)
    psi = None
    if a.psi_some_us is not None and b.psi_some_us is not None:
        psi = min(max((b.psi_some_us - a.psi_some_us) / (wall * 1e6), 0.0), 1.0)
    return Interference(wall, other, steal, psi, own / _CLK_TCK, ncpu, a.loadavg, b.loadavg)


class Monitor:
    """Context manager measuring interference over its body::

        with bench.Monitor() as mon:
            timed_section()
        mon.result  # Interference
    """

    def __init__(self, proc: str | Path = "/proc"):
        self.proc = proc
        self.start: CpuSample | None = None
        self.result: Interference | None = None

    def __enter__(self) -> "Monitor":
        self.start = cpu_sample(self.proc)
        return self

    def __exit__(self, *exc) -> None:
        self.result = interference_between(self.start, cpu_sample(self.proc))


def wait_for_quiet(timeout_s: float = 60.0, window_s: float = 2.0,
                   rule: QuietRule = DEFAULT_RULE, proc: str | Path = "/proc",
                   sleep: Callable[[float], None] = time.sleep) -> tuple[bool, Interference, float]:
    """Watch the machine in windows of ``window_s`` until one is quiet or ``timeout_s``
    has passed.  Returns (quiet, the last window's interference, seconds waited).  We
    only sleep meanwhile, so the windows see the others, not us."""
    if timeout_s < 0 or window_s <= 0:
        raise ValueError("timeout_s must be >= 0 and window_s > 0")
    t0 = time.monotonic()
    while True:
        a = cpu_sample(proc)
        sleep(window_s)
        seen = interference_between(a, cpu_sample(proc))
        waited = time.monotonic() - t0
        if seen.quiet(rule) or waited >= timeout_s:
            return seen.quiet(rule), seen, waited


# ------------------------------------------------------------------ summaries

def low_quantile(values: Sequence[float], q: float = DEFAULT_QUANTILE) -> float:
    """The q-quantile (linear interpolation) of finite values; q=0 is the minimum."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("low_quantile needs at least one finite value")
    if not 0 <= q <= 1:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    return float(np.quantile(x, q))


def summarize(values: Sequence[float], q: float = DEFAULT_QUANTILE) -> dict[str, float]:
    """min, the low q-quantile, median and n of repeated timings."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("summarize needs at least one finite value")
    return {"min": float(x.min()), f"q{int(round(q * 100)):02d}": low_quantile(x, q),
            "median": float(np.median(x)), "n": int(x.size)}


# ------------------------------------------------------------------ interleaved repeats

@dataclass
class BenchResult:
    """Interleaved measurements: ``rows`` holds one dict per (repeat, arm) with the arm's
    metrics, its position in that repeat's order, and the repeat's interference."""
    arms: list[str]
    repeats: int
    rows: list[dict[str, Any]]
    interference: Interference
    per_repeat: list[Interference]
    threads: dict[str, Any]
    rule: QuietRule = DEFAULT_RULE
    waited: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        skip = {"arm", "repeat", "position", "quiet"}
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                if k not in skip:
                    seen.setdefault(k, None)
        return list(seen)

    def values(self, arm: str, metric: str = "value", quiet_only: bool = False) -> np.ndarray:
        """Per-repeat values of ``metric`` for ``arm`` in repeat order."""
        if arm not in self.arms:
            raise KeyError(f"unknown arm {arm!r}; arms: {self.arms}")
        out = [r.get(metric, np.nan) for r in self.rows
               if r["arm"] == arm and (r["quiet"] or not quiet_only)]
        return np.asarray(out, dtype=float)

    def frame(self):
        import pandas as pd
        return pd.DataFrame(self.rows)

    def summary(self, metric: str = "value", q: float = DEFAULT_QUANTILE):
        """DataFrame: min, low quantile, median and n of ``metric`` per arm."""
        import pandas as pd
        return pd.DataFrame({a: summarize(self.values(a, metric), q) for a in self.arms}).T

    def ratio(self, num: str, den: str, metric: str = "value", quiet_only: bool = False,
              **kwargs: Any) -> Estimate:
        """Paired bootstrap ratio (stats.bootstrap_ratio) of ``num`` over ``den`` across
        repeats: each repeat ran both arms back to back, so they share its load."""
        a, b = self.values(num, metric, quiet_only), self.values(den, metric, quiet_only)
        keep = np.isfinite(a) & np.isfinite(b)
        return bootstrap_ratio(a[keep], b[keep], paired=True, **kwargs)

    def min_ratio(self, num: str, den: str, metric: str = "value") -> float:
        """min(num) / min(den): the ratio of the least disturbed repeats."""
        return float(np.nanmin(self.values(num, metric)) / np.nanmin(self.values(den, metric)))

    def quiet_repeats(self) -> int:
        return sum(1 for i in self.per_repeat if i.quiet(self.rule))

    def gate(self, rule: QuietRule | None = None) -> str | None:
        """None when the whole timed section was quiet; otherwise the reason a timing
        verdict must be withheld (for a "not testable at this scale" note)."""
        why = self.interference.reasons(rule or self.rule)
        if not why:
            return None
        return "machine loaded during the timed section: " + "; ".join(why)

    def as_dict(self) -> dict[str, Any]:
        return {"arms": self.arms, "repeats": self.repeats, "rows": self.rows,
                "interference": self.interference.as_dict(),
                "per_repeat": [i.as_dict() for i in self.per_repeat],
                "threads": self.threads, "rule": asdict(self.rule), "waited": self.waited}


def interleave(arms: Mapping[str, Callable[[], float | Mapping[str, float]]],
               repeats: int = 5, *, rotate: bool = True, warmup: int = 0,
               rule: QuietRule = DEFAULT_RULE, wait_quiet_s: float = 0.0,
               proc: str | Path = "/proc") -> BenchResult:
    """Run every arm once per repeat, in an order rotated by the repeat index.

    Each arm is a zero-argument callable returning a float (stored as metric "value")
    or a mapping of metric -> float (time it inside, in C where it matters: a Python
    call per element measures the interpreter).  ``warmup`` unrecorded rounds run first.
    ``wait_quiet_s`` > 0 first waits up to that long for a quiet machine (the outcome is
    kept in ``waited``).  Interference is measured over every repeat and the whole
    section."""
    names = list(arms)
    if not names:
        raise ValueError("interleave needs at least one arm")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    waited: dict[str, Any] = {}
    if wait_quiet_s > 0:
        ok, seen, secs = wait_for_quiet(wait_quiet_s, min(2.0, wait_quiet_s), rule, proc)
        waited = {"quiet": ok, "waited_s": secs, "last_window": seen.as_dict()}
    for _ in range(warmup):
        for name in names:
            arms[name]()
    rows, per_repeat = [], []
    start = cpu_sample(proc)
    for rep in range(repeats):
        k = rep % len(names) if rotate else 0
        order = names[k:] + names[:k]
        a = cpu_sample(proc)
        rep_rows = []
        for pos, name in enumerate(order):
            out = arms[name]()
            metrics = dict(out) if isinstance(out, Mapping) else {"value": float(out)}
            rep_rows.append({"arm": name, "repeat": rep, "position": pos, **metrics})
        seen = interference_between(a, cpu_sample(proc))
        per_repeat.append(seen)
        for r in rep_rows:
            r["quiet"] = seen.quiet(rule)
        rows.extend(rep_rows)
    whole = interference_between(start, cpu_sample(proc))
    return BenchResult(names, repeats, rows, whole, per_repeat, thread_info(), rule, waited)


def time_ns(fn: Callable[[], Any], number: int = 1) -> float:
    """Wall nanoseconds per call of ``fn`` over ``number`` back-to-back calls."""
    if number < 1:
        raise ValueError("number must be >= 1")
    t0 = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - t0) / number


# ------------------------------------------------------------------ hardware and threads

def _size_bytes(text: str) -> int:
    text = text.strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KMGkmg")) * mult


def cache_levels(cpu_dir: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> list[dict[str, Any]]:
    """[{level, type, size_bytes, shared_cpus}] from sysfs, smallest level first."""
    out = []
    for d in sorted(Path(cpu_dir).glob("index*")):
        size = _read(d / "size")
        if not size:
            continue
        out.append({"level": int((_read(d / "level") or "0").strip() or 0),
                    "type": (_read(d / "type") or "").strip(),
                    "size_bytes": _size_bytes(size),
                    "shared_cpus": (_read(d / "shared_cpu_list") or "").strip()})
    return sorted(out, key=lambda c: (c["level"], c["type"]))


def last_level_cache_bytes(cpu_dir: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """Size of the highest-level CPU cache sysfs reports (None where not exposed).  This
    is the *nominal* size: on a VM the cache is shared with other guests, so measure the
    effective size with a sweep and :func:`find_cliff`."""
    levels = cache_levels(cpu_dir)
    if not levels:
        return None
    top = max(c["level"] for c in levels)
    return max(c["size_bytes"] for c in levels if c["level"] == top)


def thp_mode(path: str | Path = "/sys/kernel/mm/transparent_hugepage/enabled") -> str | None:
    """The bracketed transparent-hugepage mode ("always", "madvise", "never")."""
    text = _read(Path(path))
    if not text or "[" not in text:
        return None
    return text.split("[", 1)[1].split("]", 1)[0]


def hardware() -> dict[str, Any]:
    """CPU model, CPU counts, caches, THP mode, hypervisor, kernel: to record with timings."""
    model, hyper = None, False
    info = _read(Path("/proc/cpuinfo")) or ""
    for line in info.splitlines():
        if line.startswith("model name") and model is None:
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and " hypervisor" in line:
            hyper = True
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = list(range(os.cpu_count() or 1))
    return {"cpu_model": model, "logical_cpus": os.cpu_count(), "affinity": affinity,
            "caches": cache_levels(), "llc_bytes": last_level_cache_bytes(),
            "thp": thp_mode(), "hypervisor": hyper, "kernel": platform.release(),
            "psi": Path("/proc/pressure/cpu").exists()}


def thread_info() -> dict[str, Any]:
    """Threads of this process now, torch's intra-op threads (if torch is loaded), and
    the thread environment variables."""
    status = _read(Path("/proc/self/status")) or ""
    os_threads = next((int(l.split()[1]) for l in status.splitlines()
                       if l.startswith("Threads:")), threading.active_count())
    torch_threads = None
    if "torch" in sys.modules:
        try:
            torch_threads = int(sys.modules["torch"].get_num_threads())
        except Exception:  # a partially imported torch
            torch_threads = None
    env = {k: os.environ[k] for k in ("EFFDL_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS") if k in os.environ}
    return {"process_threads": os_threads, "torch_threads": torch_threads, "env": env}


def find_cliff(sizes: Sequence[float], values: Sequence[float], factor: float = 1.5,
               base_points: int = 2) -> dict[str, Any]:
    """Where a per-item cost jumps for good: the first size from which every value
    exceeds ``factor`` times the in-cache level (the minimum of the ``base_points``
    smallest sizes: interference only adds time, so the minimum is the level).

    A lone spike followed by a return to the level is not a cliff.  Returns {"base":
    level, "last_below": largest size before the jump (None if the first size already
    jumps), "first_above": the first size of the jump (None: no cliff in the sweep)}.
    The effective cache lies between last_below and first_above."""
    s = np.asarray(sizes, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape or s.size < base_points + 1:
        raise ValueError(f"need matching sizes and values, more than {base_points} points")
    if factor <= 1 or base_points < 1:
        raise ValueError("factor must be > 1 and base_points >= 1")
    if np.any(np.diff(s) <= 0) or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError("sizes must increase strictly and values be finite and positive")
    base = float(np.min(v[:base_points]))
    above = v > factor * base
    # the first index from which all later values are above (a suffix of True)
    below_idx = np.nonzero(~above)[0]
    i = int(below_idx[-1]) + 1 if below_idx.size else 0
    if i >= s.size:
        return {"base": base, "last_below": float(s[-1]), "first_above": None}
    return {"base": base, "last_below": float(s[i - 1]) if i > 0 else None,
            "first_above": float(s[i])}


def geometric_sizes(lo: int, hi: int, per_octave: int = 2) -> list[int]:
    """Integers from lo to hi (inclusive), ``per_octave`` steps per doubling."""
    if lo < 1 or hi < lo or per_octave < 1:
        raise ValueError("need 1 <= lo <= hi and per_octave >= 1")
    k = int(math.floor(math.log2(hi / lo) * per_octave + 1e-9))
    out = sorted({int(round(lo * 2 ** (i / per_octave))) for i in range(k + 1)})
    return out
