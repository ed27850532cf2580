# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: effdl (venv)
#     language: python
#     name: effdl
# ---

# %% [markdown]
# # An ad-hoc compute grid, then and now
#
# **Paper.** Gaurav Menghani, Anil Harwani, Yash Londhe and Kalpesh Kagresha, *An
# Easy-to-use-and-deploy Grid Computing Framework* {cite}`menghani2010grid`,
# arXiv:2010.02348 (HiPC 2010 Student Research Symposium). Survey area: infrastructure.
#
# **What the paper says.** Grid toolkits take man-months to set up, and their services
# (reliable file transfer, security layers) are overhead on a small, trusted LAN. The
# authors built a framework a small team can deploy in minutes: one supervisor, many
# workers, tasks described in XML with priorities, dependencies and time-outs, a
# result-compilation step, an *execution monitor* that can stop everything early,
# heartbeats, requeueing of failed tasks and checkpointing. The project report adds a
# simulation study of schedulers (Min-Min, MCT, Sufferage, simulated annealing and
# genetic algorithms) on the ETC matrices of Braun et al. {cite}`braun2001comparison`.
#
# **What we can and cannot check.** The short paper's body was not readable; the
# architecture and numbers come from the authors' public repository and 57-page report.
# We never run the original binaries (they broadcast UDP on the network). Today one
# reaches for an existing engine, and so does this companion: every component of the
# 2010 design is mapped to Dask distributed {cite}`rocklin2015dask`, and the report's
# workloads run on a Dask cluster on this machine (loopback only). The report gives no
# node count for its one timing, so no speed-up of theirs can be checked; its scheduling
# table is a simulation, which we re-run. Code: `effdl_lib/chapters/grid_scheduling.py`
# (this chapter) and `effdl_lib/toolkits/grid.py` (the runner every chapter can use, and
# the one `make book` uses).

# %% tags=["remove-cell"]
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effdl_lib.chapter import start
from effdl_lib.chapters import grid_scheduling as gs
from effdl_lib.config import ConfigError
from effdl_lib.records import glue
from effdl_lib.toolkits import bench, grid

pd.set_option("display.max_colwidth", 200)
_names_before = set(globals())

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu
threads = None  # int [1, 256]
device = None  # str one of cpu, cuda, auto
sort_tasks = None  # int [1, 1000]
sort_n = None  # int [1, 1e+08]
repeats = None  # int [1, 50]
empty_tasks = None  # int [1, 100000]
sizes = None  # tuple[int, ...] [1, 1e+08]
tasks_per_size = None  # int [2, 1000]
key_bits = None  # int [8, 32]
chunk_bits = None  # int [4, 30]
key_position = None  # float [0, 1)
fault_tasks = None  # int [4, 10000]
fault_task_s = None  # float [0, 60]
fault_repeats = None  # int [1, 20]
etc_tasks = None  # int [2, 10000]
etc_machines = None  # int [2, 1000]
etc_seeds = None  # int [1, 100]
ga_max_generations = None  # int [1, 100000]
seed = None  # int [0, 2.14748e+09]

# %% [markdown]
# ## Set-up
#
# Every parameter above can be overridden from papermill (`-p NAME VALUE`; `None` takes
# the profile's value). Every Dask worker in this chapter is a separate process with one
# thread (and one BLAS, OpenMP and torch thread), bound to 127.0.0.1 on a random port,
# without a dashboard.

# %% tags=["hide-input"]
cfg, rt, record = start(gs, profile, globals(), _names_before)
hw = bench.hardware()
record.extra["hardware"] = {k: hw[k] for k in ("cpu_model", "logical_cpus", "affinity",
                                               "hypervisor", "psi")}
print(f"{hw['logical_cpus']} logical CPUs ({hw['cpu_model']}); load average before: "
      f"{', '.join(f'{x:.2f}' for x in record.env['load_avg_start'])}")
pd.DataFrame([cfg.asdict()]).T.rename(columns={0: "value"})

# %% [markdown]
# A bad parameter fails at once with the valid choices:

# %%
# NBVAL_CHECK_OUTPUT
for bad in [("cpu", {"workers": 4}), ("cpu", {"key_bits": 40}),
            ("cpu", {"chunk_bits": 26, "key_bits": 24}), ("cpu", {"sizes": [1000]})]:
    try:
        gs.Config.resolve(*bad)
    except ConfigError as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## The 2010 design beside Dask
#
# ```text
#  user: XML problem ---> supervisor (queue, scheduler, result compilation)
#                          |   ^        ^
#   UDP commands,          |   |        | stop / continue / redo
#   TCP task archives      v   |        |
#                       worker 1..n    execution monitor
#                          | heartbeat every 0.4 s (dead after 3 s)
#
#  Dask:  client ---> dask scheduler <--- dask worker (nanny) x n
#         as_completed + cancel = execution monitor; futures = dependencies
# ```
#
# Each piece of the report's design and what plays its part in Dask; only
# checkpointing of finished results is missing there, and the runner adds it.

# %% tags=["hide-input"]
pd.DataFrame(gs.ARCHITECTURE, columns=["component", "2010 framework (report)", "Dask distributed"]
             ).set_index("component")

# %% [markdown]
# The runner, `grid.sweep(fn, configs, ...)`, takes a function of one configuration and a
# list of configurations and returns one tidy table in the configurations' order. The
# essential loop submits every configuration, collects results as they complete, and
# saves each one under its key before the next:
#
# ```{literalinclude} ../effdl_lib/toolkits/grid.py
# :pyobject: _run_dask
# ```
#
# ## Starting a cluster
#
# The report's claim is that its grid is up in minutes where toolkits take man-months.
# Dask's `LocalCluster` is one call; on a LAN it is `dask scheduler` on one machine and
# `dask worker tcp://HOST:8786` on each of the others (README, "Running on a cluster").
# We start two clusters for the timings: one worker and two workers.

# %%
t0 = time.perf_counter()
two_ctx = grid.dask_client(2, local=True)  # this machine, whatever EFFDL_SCHEDULER says
two = two_ctx.__enter__()
setup_s = time.perf_counter() - t0
one_ctx = grid.dask_client(1, local=True)
one = one_ctx.__enter__()
for client in (one, two):
    gs.warm_up(client)  # first imports on each worker, outside every timed section
glue("setup_s", setup_s)
print(f"2-worker cluster ready in {setup_s:.1f} s; workers: {sorted(two.run(lambda: 1))}")

# %% [markdown]
# ## The report's workload, scaled: sorts of a million integers
#
# The report's one timing: 100 tasks, each sorting $10^6$ generated integers (about
# 70 MiB shipped in all), 53.285 s end to end on an unstated number of nodes. The cpu
# profile runs half as many tasks (the `gpu` profile all 100). Here each
# task generates its integers from a seed, so nothing is shipped but the function and a
# checksum: the workload measures scheduling and compute, not the LAN. Serial (a loop
# in this process), one worker and two workers run in every repeat, in rotated order;
# beside each time is the share of the other cores that *other* processes kept busy
# meanwhile (our own client, scheduler and workers subtracted).

# %%
sort = gs.sort_experiment({"serial": None, "1 worker": one, "2 workers": two}, cfg)
sort_summary = sort.groupby("arm", sort=False).agg(
    tasks=("tasks", "first"), min_s=("seconds", "min"), median_s=("seconds", "median"),
    other_busy_max=("other_busy", "max"), steal_max=("steal", "max"))
sort_speed = gs.speedups(sort)
sort_summary.join(sort_speed.set_index("arm")[["speedup", "speedup_median"]]).round(3)

# %% tags=["remove-cell"]
_s = sort_summary["min_s"]
glue("sort_serial_s", _s["serial"])
glue("sort_two_s", _s["2 workers"])
glue("sort_one_s", _s["1 worker"])
glue("sort_tasks", cfg.sort_tasks)
glue("sort_per100_s", _s["serial"] / cfg.sort_tasks * 100)
glue("sort_speed2", sort_speed.set_index("arm").loc["2 workers", "speedup"])
glue("sort_task_ms", 1000 * _s["serial"] / cfg.sort_tasks)

# %% [markdown]
# {glue:text}`sort_tasks` sorts took {glue:text}`sort_serial_s:.2f` s serially (the best
# repeat; {glue:text}`sort_per100_s:.1f` s per 100 tasks), {glue:text}`sort_one_s:.2f` s on
# one worker and {glue:text}`sort_two_s:.2f` s on two, so two workers ran at
# {glue:text}`sort_speed2:.2f`x the serial speed (least disturbed repeats). A task
# here takes about {glue:text}`sort_task_ms:.0f` ms serially. The report's 53 s for 100
# such tasks included shipping 70 MiB and unpacking and compiling task archives; without
# a node count it says nothing about speed-up, and our time is not comparable with it.
#
# ## What an empty task costs
#
# Empty tasks, all submitted at once: what is left of their time is the engine's
# overhead per task (serialisation, scheduler bookkeeping, two network hops on
# loopback). Dask's best-practices documentation puts it at 200 µs to 1 ms. Our clusters
# hand each worker one task at a time (see "Faults" below), so every empty task here
# also waits for a round trip to the scheduler: an upper bound on Dask's own cost.

# %%
overhead = gs.overhead_experiment({"serial": None, "1 worker": one, "2 workers": two}, cfg)
ov = overhead.groupby("arm", sort=False)["ms_per_task"].agg(["min", "median", "max"])
ov.round(4)

# %% tags=["remove-cell"]
glue("ov_two_ms", ov.loc["2 workers", "median"])
glue("ov_one_ms", ov.loc["1 worker", "median"])
glue("ov_serial_us", 1000 * ov.loc["serial", "median"])
glue("empty_tasks", cfg.empty_tasks)

# %% [markdown]
# An empty task costs {glue:text}`ov_two_ms:.2f` ms on two workers and
# {glue:text}`ov_one_ms:.2f` ms on one (medians over repeats of
# {glue:text}`empty_tasks` tasks), against {glue:text}`ov_serial_us:.2f` µs for a Python
# call in this process: the physical floor.
#
# ## Where distribution starts to pay
#
# The same sort at sizes from {glue:text}`size_lo:,` to {glue:text}`size_hi:,` integers:
# serial against two workers.
# The x axis is the serial time of one task; the crossover is where the speed-up first
# reaches 1.

# %%
cross = gs.crossover_experiment({"serial": None, "2 workers": two}, cfg)
cross_speed = gs.speedups(cross)
crossover_ms = gs.crossover(cross_speed)
cross_speed.round(3)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Speed-up of two Dask workers over a serial loop against the serial time of one sort task (log axis); the dots are the least disturbed repeats (min over min), the line the median ratio over repeats. Dashed: no gain (1) and the 1.7x target.", "name": "fig-grid-crossover"}}
fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(cross_speed["task_ms"], cross_speed["speedup"], "o", label="min / min")
ax.plot(cross_speed["task_ms"], cross_speed["speedup_median"], "-", label="median ratio")
ax.axhline(1.0, ls="--", c="grey", label="no gain")
ax.axhline(gs.SPEEDUP_THRESHOLD, ls=":", c="tab:red", label="1.7x target")
if crossover_ms:
    ax.axvline(crossover_ms, c="tab:green", alpha=0.5, label=f"crossover {crossover_ms:.2g} ms")
ax.set_xscale("log")
ax.set_xlabel("serial time of one task (ms)")
ax.set_ylabel("speed-up of 2 workers over serial")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% tags=["remove-cell"]
glue("crossover_text", f"tasks of about {crossover_ms:.2g} ms" if crossover_ms
     else "no task size in this range")
_big = cross_speed.iloc[-1]
glue("size_lo", int(min(cfg.sizes)))
glue("size_hi", int(max(cfg.sizes)))
glue("big_n", int(_big["n"]))
glue("big_ms", _big["task_ms"])
glue("big_speed", _big["speedup"])
glue("big_busy", _big["other_busy_max"])

# %% [markdown]
# Where two workers break even with the serial loop: {glue:text}`crossover_text`. Below
# that, the cost of shipping a task and its result outweighs the second core. At the largest size
# ({glue:text}`big_n:,` integers, {glue:text}`big_ms:.0f` ms a task) two workers gave
# {glue:text}`big_speed:.2f`x, while other processes kept up to {glue:text}`big_busy:.0%`
# of the other core busy. On two cores shared by this notebook, the scheduler, both
# workers and whatever else runs on the machine, 2x is the ceiling; whether the 1.7x
# target is met is decided below only if the machine was quiet while we timed
# (bench's rule: other cores at most 15 % busy, steal at most 5 %, CPU pressure at most
# 10 %), and withheld otherwise. Other processes' CPU excludes our own workers; the CPU
# pressure is taken from the serial repeats only. **Changed after a run:** the first
# cpu run with tasks this large took the pressure from both arms and withheld the verdict
# at 17 % pressure, while other processes used under 1 % of the other core: two workers
# on two cores, with the scheduler and this notebook beside them, make their own pressure.
#
# Two things we learned on the way about workers and memory. A sort of this size
# streams through memory, and two of them at once share one memory bus: the likely
# reason why two cores do not give two sorts' worth here (we did not measure the bus
# itself). And Dask's nanny starts every worker with
# `MALLOC_TRIM_THRESHOLD_=65536`, which makes glibc hand freed memory back at once and
# fixes its mmap threshold: torch training in a worker then faults its pages in again
# for every large tensor. A blind-student task of chapter 01 (CIFAR patches, one seed)
# took 7.3 s of CPU in such a worker and 4.0 s without it (4.0 s in the notebook's own
# process); the runner's
# local clusters now start workers without it (`grid.worker_spawn_environ`).
#
# ## The execution monitor: stop at the first hit
#
# The report's demo: a brute-force search for a 32-bit XOR key, split into tasks, that
# stops everything once one task finds it. Here the "ciphertext" is a 16-byte message
# XORed with a repeated 32-bit key; the searcher knows only that the message is lower-case
# letters ending in `now!`, and each task tries $2^{22}$ keys with vectorised NumPy. The
# monitor is Dask's `as_completed` plus `cancel`, with task priorities putting the low
# keys first:
#
# ```{literalinclude} ../effdl_lib/chapters/grid_scheduling.py
# :pyobject: key_search
# ```

# %%
monitor = gs.monitor_experiment(two, cfg)
mon = pd.DataFrame(monitor)[["repeat", "secret", "key", "found", "chunks_done",
                            "chunks_total", "hit_s", "stop_s", "full_search_s"]]
mon.round(3)

# %% tags=["remove-cell"]
glue("mon_stop_ms", 1000 * mon["stop_s"].max())
glue("mon_hit_s", mon["hit_s"].median())
glue("mon_full_s", mon["full_search_s"].median())
glue("mon_share", (mon["chunks_done"] / mon["chunks_total"]).mean())
glue("mon_found", bool(mon["found"].all()))

# %% [markdown]
# Every search found its key ({glue:text}`mon_found`) after searching
# {glue:text}`mon_share:.1%` of the key space in {glue:text}`mon_hit_s:.1f` s (median), and
# no task was still running {glue:text}`mon_stop_ms:.0f` ms (worst case) after the hit;
# the full space would have taken about {glue:text}`mon_full_s:.0f` s at the same rate.
#
# ## The scheduling study
#
# Braun et al. {cite}`braun2001comparison` model a heterogeneous grid by an
# *expected time to compute* matrix: ETC[i, j] is the time of task i on machine j, drawn
# as a task factor in [1, 3000) (high task heterogeneity) or [1, 100) (low) times a
# machine factor in [1, 1000) or [1, 10). *Consistent* matrices have every row sorted
# (a faster machine is faster for every task); *semi-consistent* ones have the even
# columns sorted; *inconsistent* ones are left as drawn. The heuristics map all tasks
# at once (a batch) to minimise the makespan, the finishing time of the busiest
# machine:
#
# - **MCT**: tasks in order, each to the machine where it finishes first;
# - **Min-Min**: repeatedly the task with the smallest best completion time;
# - **Sufferage**: repeatedly the task that would lose most by not getting its best
#   machine (one task per step, a common simplification);
# - **SA** (Braun's simulated annealing): random single-task moves, a worse schedule
#   accepted with a temperature-dependent probability, cooling by 10 % per move; from a
#   random start (plain) or from Min-Min (seeded);
# - **Braun's GA**: 200 chromosomes (one Min-Min, the rest random), rank-roulette
#   selection, elitism, single-point crossover (0.6), move mutation (0.4), stop after
#   1000 generations or 150 without a better elite;
# - **the report's modified GA**: 100 chromosomes seeded with Sufferage, MCT and
#   Min-Min, top-5 % elitism, swap mutation (0.4), crossover (0.2), stop after 100
#   generations without improvement, then a load-balancing local search.
#
# The GAs evaluate whole populations at once: one `bincount` over population x machine
# bins gives every chromosome's machine loads.
#
# ```{literalinclude} ../effdl_lib/chapters/grid_scheduling.py
# :pyobject: makespans
# ```
#
# On a hand case of three tasks and two machines, Min-Min's greedy choice costs it the
# optimum (the brute force over all $2^3$ mappings), while Sufferage finds it:

# %%
# NBVAL_CHECK_OUTPUT
hand = np.array([[1.0, 1.5], [1.0, 1.5], [3.0, 100.0]])
for name, fn in [("min_min", gs.min_min), ("mct", gs.mct), ("sufferage", gs.sufferage)]:
    a = fn(hand)
    print(f"{name:10s} mapping {a.tolist()} makespan {gs.makespan(hand, a):g}")
print(f"optimum    mapping {gs.brute_force_optimum(hand)[1].tolist()} makespan "
      f"{gs.brute_force_optimum(hand)[0]:g}")

# %% [markdown]
# The vectorised evaluation against a Python loop, on one population of 200 schedules of
# the chapter's matrix size (interleaved repeats; seconds per population):

# %%
speed = gs.makespan_speed(cfg)
speed_table = speed.summary()
glue("vec_speedup", speed.min_ratio("loop", "vectorised"))
speed_table

# %% [markdown]
# The vectorised evaluation is {glue:text}`vec_speedup:.0f`x faster than the loop, which is
# what lets the cpu profile run both GAs on full 512 x 16 matrices.
#
# Now every heuristic on every matrix: 3 consistency classes x 4 heterogeneity classes x
# `etc_seeds` matrices, one matrix per task through the runner on the two workers. The
# *penalty* of a heuristic on a matrix is its makespan over the worst heuristic's on
# that matrix (the report's score). The report sums penalties per column; its plain
# SA's 40.0 (worst everywhere) implies 40 matrices per column, so its sums are shown
# divided by 40, beside our means per matrix. The report's GSA (genetic simulated
# annealing) is not re-implemented.

# %%
sched = gs.scheduling_experiment(cfg, two)
gs.penalty_table(sched).round(3)

# %% [markdown]
# The penalty's scale is set by the worst heuristic, and the report's plain SA must have
# been far worse than ours (its other heuristics score about 0.17, 0.09 and 0.07 per
# matrix: six to fourteen times better than plain SA). A scale that does not depend on
# the worst: each heuristic relative to Min-Min (ours: mean makespan ratio per matrix;
# the report's: ratio of its penalty sums).

# %%
gs.relative_table(sched).round(3)

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Makespan of each heuristic relative to Min-Min on the same matrix (lower is better), per consistency class; mean and range over the heterogeneity classes and seeds.", "name": "fig-grid-heuristics"}}
_keys = ["consistency", "heterogeneity", "seed"]
_mm = sched[sched["heuristic"] == "min_min"].set_index(_keys)["makespan"].rename("mm")
rel = sched.join(_mm, on=_keys)
rel["rel"] = rel["makespan"] / rel["mm"]
order = [h for h in gs.HEURISTICS if h != "sa"]
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), sharey=True)
for ax, cons in zip(axes, gs.CONSISTENCIES):
    g = rel[(rel["consistency"] == cons) & rel["heuristic"].isin(order)]
    stats = g.groupby("heuristic")["rel"].agg(["mean", "min", "max"]).loc[order]
    ax.errorbar(range(len(order)), stats["mean"],
                yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]], fmt="o")
    ax.axhline(1.0, ls="--", c="grey")
    ax.set_xticks(range(len(order)), order, rotation=60)
    ax.set_title(cons)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("makespan / Min-Min's")
axes[1].set_xlabel("heuristic (plain SA, far above, left out)")
plt.tight_layout()
plt.show()

# %% tags=["remove-cell"]
one_ctx.__exit__(None, None, None)
two_ctx.__exit__(None, None, None)
_sa = sched[sched["heuristic"] == "sa"]["penalty"]
glue("sa_penalty", _sa.mean())
glue("n_matrices", sched.groupby(["consistency", "heterogeneity", "seed"]).ngroups)
_secs = sched.groupby("heuristic")["seconds"].median()
glue("ga_braun_s", _secs["ga_braun"])
glue("ga_mod_s", _secs["ga_modified"])

# %% [markdown]
# Over {glue:text}`n_matrices` matrices, plain SA ends at a mean penalty of
# {glue:text}`sa_penalty:.2f`: from a random start, Braun's fast cooling freezes it long
# before it gets anywhere. Braun's GA took {glue:text}`ga_braun_s:.2f` s per matrix
# (median) and the modified GA {glue:text}`ga_mod_s:.2f` s. Simulated makespans say
# nothing about measured grid speed-ups; they rank schedulers under the ETC model.
#
# ## Faults
#
# **A killed worker.** A sweep of short tasks on a fresh two-worker cluster, with a
# checkpoint folder; once a third of the results are on disk, one worker process gets
# SIGKILL (no goodbye to the scheduler). The scheduler notices the broken connection,
# reschedules the tasks the dead worker held (its nanny starts a replacement), and the
# sweep goes on:

# %%
with tempfile.TemporaryDirectory() as tmp:
    faults = gs.fault_experiment(cfg, tmp)
pd.DataFrame([{k: f[k] for k in ("repeat", "n_tasks", "results", "distinct", "correct",
                                 "starts", "killed_after", "killed_ran")}
              for f in faults])

# %% tags=["remove-cell"]
glue("fault_reruns", sum(f["starts"] - f["n_tasks"] for f in faults))
glue("fault_runs", len(faults))
glue("fault_all", all(f["correct"] == f["n_tasks"] == f["distinct"] for f in faults))

# %% [markdown]
# In {glue:text}`fault_runs` run(s), every result arrived exactly once and correct
# ({glue:text}`fault_all`); {glue:text}`fault_reruns` task(s) were started a second time
# because the dead worker held them (so re-running a task must be harmless, as it is for
# a pure function). `killed_ran` is how many results the victim had delivered before.
#
# **Allowed failures exhausted.** A task that kills its own worker every time (a crash
# in C, the kernel's OOM killer) is not retried forever: after
# `distributed.scheduler.allowed-failures` + 1 deaths (here 1 + 1) Dask marks it failed
# with `KilledWorker`, and the runner raises a `SweepError` that names the
# configuration, while the results finished before it stay in the checkpoint. Dask
# counts every task the dead worker held as a suspect, so the runner's clusters hand a
# worker one task at a time (`worker-saturation` 1.0 instead of Dask's 1.1): a crash
# then implicates only the task that caused it.

# %%
with tempfile.TemporaryDirectory() as tmp:
    exhausted = gs.exhausted_failures(tmp, allowed_failures=1)
print(f"{exhausted['error']} (cause: {exhausted['cause']})")
print(exhausted["message"].split(";")[0])
print("kept in the checkpoint:", exhausted["kept"])

# %% [markdown]
# ## Claims and verdicts
#
# Each claim with its origin, the report's value where it gives one, our measurement
# and the rule fixed before the run. Timing verdicts are withheld when other processes
# loaded the machine during the timed section.

# %% tags=["hide-input"]
results = {"setup_s": setup_s, "sort": sort, "overhead": overhead, "crossover": cross,
           "monitor": monitor, "faults": faults, "scheduling": sched,
           "ga_max_generations": cfg.ga_max_generations}
record.check_all(gs.measure(results))
record.extra["timings"] = {
    "sort": sort.to_dict("records"), "overhead": overhead.to_dict("records"),
    "crossover": cross.to_dict("records"), "crossover_ms": crossover_ms,
    "makespan_eval": speed.as_dict()}
record.extra["notes"] = {c.claim.id: c.note for c in record.checks}
glue("verdicts", "; ".join(f"{c.claim.id} {c.verdict}" for c in record.checks))
record.table()

# %% tags=["remove-cell"]
_notes = {c.claim.id: c.note for c in record.checks}
glue("speedup_note", _notes["speedup-2-workers"])

# %% [markdown]
# **Reading the record.** Dask does everything the 2010 framework did, except
# checkpointing finished results, which the runner adds in a few lines; setting it up
# is one call on one machine ({glue:text}`setup_s:.1f` s) and two commands on a LAN. The
# fault-tolerance claim holds: a worker killed mid-run cost no result. The timing claims
# (overhead, speed-up, time to stop) are decided only when the machine was quiet while
# they were timed, or when a bound holds even under load; the speed-up claim:
# {glue:text}`speedup_note`. In the scheduling study, Min-Min beats MCT and plain SA is
# the worst heuristic on every matrix, as in the report; the modified GA runs in a
# fraction of Braun's GA's time, but its schedules are not measurably better than
# Braun's (the report's margin is 0.5-2 % of the penalty sums). Verdicts, from the rules
# fixed before the run: {glue:text}`verdicts`.
#
# **Limits.** One machine with two cores, shared with other jobs: every "cluster" here
# is processes on loopback, so network costs of a real LAN are absent and the timings
# carry the load of whatever else ran (recorded beside each). Our sort tasks generate
# their data instead of shipping 70 MiB. Sufferage is the one-task-per-step variant; the
# modified GA's selection is not given in the report (we use Braun's rank roulette);
# GSA is not re-run; the report's penalty sums are compared per matrix under the
# assumption of 40 matrices per column.

# %% tags=["hide-input"]
record.write();
