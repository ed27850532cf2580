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
# # Fast Bitmap Fit: an allocator that keeps lists in order
#
# **Paper.** Dhruv Matani and Gaurav Menghani, *Fast Bitmap Fit: A CPU Cache Line
# friendly memory allocator for single object allocations* {cite}`matani2021bitmap`,
# arXiv:2110.10357. Survey area: infrastructure.
#
# **The idea.** Programs that build linked lists and trees out of single-object
# allocations get slower over time: after random allocations and frees, consecutive
# nodes end up scattered, and every step of a traversal is a cache miss. The paper's
# allocator keeps one pool per object size with a bit per slot, kept apart from the
# objects, and always hands out the **lowest free address**, found in O(log n) with a
# tree of bitmaps. Holes are then refilled in ascending order, so a list that is
# appended to after random frees is laid out forwards in memory again. Free lists with
# LIFO reuse (glibc's tcache and fastbins, thread caches, a plain pool) hand holes back
# in reverse free order instead.
#
# **What we can and cannot check.** The paper's body and its own speed-ups were not
# readable offline; the design here follows its abstract and the first author's earlier
# public design, and the 1.39x of that earlier design is *not* this paper's result. We
# test the qualitative claims, with deterministic locality metrics (fractions of list
# steps on the same cache line or page) beside timings that are medians of interleaved
# repeats. The GPU plays no part: the `gpu` profile is the `cpu` profile with larger
# sizes and more repeats. Code: `effdl_lib/chapters/bitmap_allocator.py`, with the pools and
# workloads in C (`cython_ext/alloc_pool.h`, `cython_ext/alloc_workloads.h`) behind a
# Cython extension; every timed loop runs in C without the GIL.

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effdl_lib.chapters import bitmap_allocator as fbf
from effdl_lib.config import ConfigError, notebook_parameters
from effdl_lib.records import Record, glue
from effdl_lib.stats import bootstrap_ratio, mean_ci, paired_diff, paired_values

pd.set_option("display.max_colwidth", 400)
_names_before = set(globals())

# %% tags=["parameters"]
profile = "cpu"

# %% [markdown]
# ## Set-up

# %%
cfg = fbf.Config.resolve(profile, notebook_parameters(globals(), _names_before))
record = Record("02_bitmap_allocator", "Fast Bitmap Fit: an allocator that keeps lists in order",
                f"arXiv:{fbf.ARXIV}", profile, cfg.asdict(), threads=1)
state = fbf.system_state()
preloads = fbf.available_preloads() if cfg.preloads else {}
llc = fbf.last_level_cache_bytes()
record.extra["system"] = {**state, "llc_bytes": llc, "preloads": preloads}
print(f"profile={profile}; one thread; load average {state['loadavg'][0]:.2f}; "
      f"transparent huge pages: {state['thp']}; last-level cache: "
      f"{llc / 2**20 if llc else float('nan'):.0f} MiB")
print("real allocators through LD_PRELOAD:", ", ".join(sorted(preloads)) or "none installed")
pd.DataFrame([cfg.asdict()]).T.rename(columns={0: "value"})

# %% [markdown]
# ## The pools, by hand
#
# Five allocators share one interface: the system `malloc`, a LIFO free list, the bitmap
# pool (lowest free address first), the bitmap pool with a hint (the free slot nearest
# above a given address), and an address-ordered free list (lowest-first too, but O(n)
# per free). Allocate eight 32-byte slots, free slots 2, 5 and 3, and allocate three
# more: which slots come back, in which order?

# %%
# NBVAL_CHECK_OUTPUT
for name, pool_cls in [("bitmap", fbf.BitmapPool), ("ordered_list", fbf.OrderedFreeListPool),
                       ("lifo", fbf.LifoPool)]:
    pool = pool_cls(obj_size=32)
    slots = [pool.alloc() for _ in range(8)]
    for i in (2, 5, 3):
        pool.free(slots[i])
    again = [(pool.alloc() - pool.base) // 32 for _ in range(3)]
    print(f"{name:13s} refills slots {again}")

# %% [markdown]
# Misuse raises instead of corrupting the pool:

# %%
# NBVAL_CHECK_OUTPUT
pool = fbf.BitmapPool(obj_size=32, capacity=64)
a = pool.alloc()
pool.free(a)
for what, action in [("double free", lambda: pool.free(a)),
                     ("foreign pointer", lambda: pool.free(a + 7)),
                     ("exhaustion", lambda: [pool.alloc() for _ in range(65)])]:
    try:
        action()
    except fbf.PoolError as err:
        print(f"{what:16s} -> {type(err).__name__}")

# %% [markdown]
# ## Locality after random frees (deterministic)
#
# Workload W1, a queue with random cancellations: build a list of N 32-byte nodes, free
# a random half, append as many new nodes at the tail, then walk the list. The table
# gives, for N = 4,096 and seed 0, the fraction of steps whose next node is on the same
# 64-byte line or 4 KiB page, the fraction that move forwards in memory, and distinct
# pages per 1,000 consecutive nodes. These numbers are a pure function of the seed for
# the pools (CI checks them exactly); `malloc` depends on the C library's state.

# %%
# NBVAL_CHECK_OUTPUT
pools = ["lifo", "bitmap", "bitmap_hint", "ordered_list"]
small = fbf.locality_over_seeds(pools, cfg.locality_n, seeds=1)
small.set_index("allocator")[["same_line", "same_page", "forward", "pages_per_1000"]].round(4)

# %% [markdown]
# At the claim's size, over seeds, with `malloc` beside the pools:

# %%
loc = fbf.locality_over_seeds(["malloc", "lifo", "bitmap", "bitmap_hint"], cfg.target_n, cfg.seeds)
loc_summary = loc.groupby("allocator", sort=False)[["same_line", "same_page", "forward", "pages_per_1000"]].mean()
loc_summary.round(4)

# %% [markdown]
# ## Traversal speed across sizes
#
# The same workload at growing N, every allocator once per repeat in a rotating order
# (so slow drifts of the machine hit all of them alike); each point is the median over
# repeats of a run's median traversal time. `glibc`, `jemalloc`, `mimalloc` and
# `tcmalloc` run the `malloc` workload in a fresh subprocess, the last three through
# `LD_PRELOAD`. The ordered list is left out above N = 2^16: its O(n) free takes hours
# at 2^20.

# %%
in_process = list(fbf.ALLOCATORS)
external = ["glibc", *sorted(preloads)]
sweep, raw_by_n = [], {}
for n in cfg.sizes:
    med, raw = fbf.compare_allocators(in_process + external, "W1", n, 32, cfg.repeats,
                                      ordered_list_max_n=cfg.ordered_list_max_n, return_raw=True)
    raw_by_n[n] = raw
    sweep.append(med.reset_index().assign(n=n))
sweep = pd.concat(sweep, ignore_index=True)
fig, ax = plt.subplots(figsize=(7, 4.2))
for name, g in sweep.groupby("allocator", sort=False):
    style = "-" if name in in_process else "--"
    ax.plot(g["n"] * 32 / 2**20, g["traversal_ns"], style, marker="o", label=name)
if llc:
    ax.axvline(llc / 2**20, color="gray", ls=":", label="last-level cache")
ax.set(xscale="log", yscale="log", xlabel="live data (MiB of 32-byte nodes)",
       ylabel="traversal ns/node (median)", title="W1 after churn: traversal time per node")
ax.legend(fontsize=8, ncol=2)
ax.grid(alpha=0.3)
plt.show()
sweep.pivot(index="allocator", columns="n", values="traversal_ns").round(2)

# %% [markdown]
# ## The price: allocation and free
#
# Allocation plus free, in ns per pair, timed in tight C loops during the churn; the
# smallest size fits in cache, the target size does not. Footprint is bytes committed
# (the pools commit whole geometric chunks, so up to 2x the live data) and pages the
# list actually touches.

# %%
cost = sweep[sweep["n"].isin([min(cfg.sizes), cfg.target_n])]
cost.pivot(index="allocator", columns="n", values="alloc_free_ns").round(1).join(
    cost[cost.n == cfg.target_n].set_index("allocator")[["footprint_bytes", "pages_touched"]])

# %% [markdown]
# ## Density is not locality: a 48-byte stride
#
# glibc turns a 32-byte request into a 48-byte chunk, so part of a pool's advantage
# could be density alone. With 48-byte slots for every allocator:

# %%
at_target = sweep[sweep.n == cfg.target_n].set_index("allocator").reindex(in_process)
stride = {size: at_target if size == 32 else
          fbf.compare_allocators(in_process, "W1", cfg.target_n, size, cfg.repeats,
                                 ordered_list_max_n=cfg.ordered_list_max_n)
          for size in cfg.obj_sizes}
pd.DataFrame({f"{size} B: ns/node": t["traversal_ns"] for size, t in stride.items()}).join(
    pd.DataFrame({f"{size} B: same page": t["same_page"] for size, t in stride.items()})).dropna().round(3)

# %% [markdown]
# ## Drift over time (W4)
#
# Steady-state churn: every round frees a random half of the list and appends as many
# nodes; the list is walked after each round.

# %%
dr = fbf.drift(["malloc", "lifo", "bitmap"], cfg.w4_n, cfg.w4_rounds, cfg.seeds)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for name, g in dr.groupby("allocator", sort=False):
    m = g.groupby("round")[["traversal_ns", "same_page"]].mean()
    axes[0].plot(m.index, m["traversal_ns"], marker="o", label=name)
    axes[1].plot(m.index, m["same_page"], marker="o", label=name)
axes[0].set(xlabel="churn round", ylabel="traversal ns/node", yscale="log", title=f"W4, N = {cfg.w4_n:,}")
axes[1].set(xlabel="churn round", ylabel="same-page fraction", ylim=(0, 1.02), title="locality")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
plt.show()

# %% [markdown]
# ## Hints (W2, W3)
#
# W2 inserts after, and deletes, random nodes of a list, passing the predecessor as the
# hint; W3 churns a binary search tree with the parent as the hint and walks it in
# order. Both layouts stay random for every allocator: a hint can only help where a free
# slot lies near the hinted address. At the `cpu` size (N = 2^16, 2 MiB) the structure
# fits in the last-level cache, so fewer pages per 1,000 nodes need not show as time.

# %%
hint_runs = {w: fbf.compare_allocators(["malloc", "lifo", "bitmap", "bitmap_hint"], w, cfg.hint_n,
                                       32, cfg.repeats, return_raw=True) for w in ("W2", "W3")}
pd.concat({w: med[["traversal_ns", "same_page", "forward", "pages_per_1000"]]
           for w, (med, _) in hint_runs.items()}, axis=1).round(3)

# %% [markdown]
# ## Claims
#
# Rules fixed in `effdl_lib/chapters/bitmap_allocator.py` before the run. Ratios are bootstrapped
# over interleaved repeats (paired by repeat); locality over seeds.

# %%
C = fbf.CLAIMS


def per_repeat(raw, a, b, column):
    return paired_values(raw, "allocator", a, b, column, by="repeat")


target_raw = raw_by_n[cfg.target_n]
loc_a, loc_b = paired_values(loc, "allocator", "bitmap", "malloc", "forward")
record.check(C["ascending-layout"], mean_ci(loc[loc.allocator == "bitmap"]["same_page"]))
record.check(C["forward-vs-malloc"], paired_diff(loc_a, loc_b))
speedup = bootstrap_ratio(*per_repeat(target_raw, "malloc", "bitmap", "traversal_ns"))
beyond_llc = llc is None or cfg.target_n * 32 >= llc
speedup_check = record.check(C["traversal-speedup"], speedup if beyond_llc else None,
                             note=f"N = {cfg.target_n:,} ({cfg.target_n * 32 / 2**20:.1f} MiB of live "
                                  f"nodes; last-level cache {llc / 2**20 if llc else float('nan'):.0f} MiB)")
for cid, n in (("alloc-cost-vs-lifo", cfg.target_n), ("alloc-cost-in-cache", min(cfg.sizes))):
    record.check(C[cid], bootstrap_ratio(*per_repeat(raw_by_n[n], "bitmap", "lifo", "alloc_free_ns")),
                 note=f"N = {n:,}")
lost = -fbf.drift_change(dr, "same_page")
slowdown = fbf.drift_change(dr, "traversal_ns", ratio=True)
w4_note = f"rounds {dr['round'].min()}..{dr['round'].max()}, N = {cfg.w4_n:,}"
record.check(C["drift-layout"], paired_diff(lost["malloc"].sort_index(), lost["bitmap"].sort_index()),
             note=w4_note)
record.check(C["drift-time"], paired_diff(slowdown["malloc"].sort_index(), slowdown["bitmap"].sort_index()),
             note=w4_note)
w2_med, w2_raw = hint_runs["W2"]
hint_ratio = bootstrap_ratio(*per_repeat(w2_raw, "bitmap", "bitmap_hint", "traversal_ns"))
record.check(C["hint-with-slack"], hint_ratio, note=f"N = {cfg.hint_n:,}")
record.check(C["paper-speedups"], None)

glue("speedup", speedup.mean)
glue("speedup_lo", speedup.ci_low)
glue("speedup_hi", speedup.ci_high)
glue("same_page_bitmap", float(loc_summary.loc["bitmap", "same_page"]))
glue("same_page_malloc", float(loc_summary.loc["malloc", "same_page"]))
glue("target_mib", cfg.target_n * 32 / 2**20)
glue("speedup_verdict", speedup_check.verdict)
at_n = sweep[sweep.n == cfg.target_n].set_index("allocator")["traversal_ns"]
glue("external_walks", "; ".join(f"{a} {at_n[a]:.1f}" for a in external if a in at_n)
     + f" ns/node, against {at_n['bitmap']:.1f} for the bitmap pool")
w4 = dr.groupby(["allocator", "round"])[["traversal_ns", "same_page"]].mean()
first, last = dr["round"].min(), dr["round"].max()
glue("w4_text", "; ".join(
    f"{a}: same-page fraction {w4.loc[(a, first), 'same_page']:.1%} -> {w4.loc[(a, last), 'same_page']:.1%}, "
    f"walk {w4.loc[(a, first), 'traversal_ns']:.1f} -> {w4.loc[(a, last), 'traversal_ns']:.1f} ns/node"
    for a in ("malloc", "bitmap")))
glue("w2_text", f"pages per 1,000 nodes {w2_med.loc['bitmap', 'pages_per_1000']:.0f} without the hint "
     f"and {w2_med.loc['bitmap_hint', 'pages_per_1000']:.0f} with it; traversal time ratio "
     f"(without / with) {hint_ratio.mean:.2f} [{hint_ratio.ci_low:.2f}, {hint_ratio.ci_high:.2f}]")
record.table()

# %% [markdown]
# **Reading the record.** At {glue:text}`target_mib:.0f` MiB of live 32-byte nodes, the
# next node of the list is on the same page {glue:text}`same_page_bitmap:.1%` of the time
# with the bitmap pool, against {glue:text}`same_page_malloc:.1%` with glibc malloc, and
# the traversal is {glue:text}`speedup:.1f`x faster (95 % CI
# {glue:text}`speedup_lo:.1f`-{glue:text}`speedup_hi:.1f`); against the 20x target the
# verdict is *{glue:text}`speedup_verdict`*. The ratio is bounded by the bitmap pool's
# own walk, which is not free once the list leaves the cache (see the sweep above). The
# real allocators through `LD_PRELOAD` at the same size: {glue:text}`external_walks`.
#
# Under steady churn (W4): {glue:text}`w4_text`. The same-page metric sees the layout
# but not everything the cache sees: after a second round the list visits its address
# range in several interleaved ascending passes. With a hint in W2:
# {glue:text}`w2_text`.
#
# **Limits.** One machine, shared and virtualised; no hardware counters, so cache
# behaviour is inferred from the deterministic layout metrics and timings. Empty chunks
# are never returned to the system. The workloads are synthetic; the paper's own
# benchmarks and numbers were not available.

# %%
record.write();
