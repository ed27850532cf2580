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
# test the qualitative claims with deterministic locality metrics (fractions of list
# steps on the same cache line or page, and how often the walk comes back to a page it
# had left), which get verdicts on any machine, beside timings, which get verdicts only
# when the machine was measured quiet while they ran. The GPU plays no part: the `gpu`
# profile is the `cpu` profile with larger sizes and more repeats.
#
# **A changed target, and cold walks.** An earlier version of this chapter claimed a
# 20x traversal speed-up over glibc malloc, from a prototype figure of 2.1 ns/node at
# 10^6 nodes. 10^6 32-byte nodes are 32 MiB, the size of this machine's last-level
# cache, and a walk repeated back to back over memory just written is served largely
# from that cache: the chapter's own earlier runs timed such warm walks, and their
# perfectly ordered list came out faster than the prototype's figure, so 2.1 ns/node
# says little about a list that has to come from memory, and an independent idle
# re-measurement could not reproduce the 20x. The claims below are grounded in the mechanism instead: the bitmap walk
# against a perfectly ordered list in the same run (the physical floor), and against
# malloc at {glue:text}`target_mib:.0f` MiB of live nodes,
# {glue:text}`target_over_llc:.0f`x the nominal last-level cache. Every timed walk starts
# from cold caches: just before it, the C harness touches every cache line of a
# {glue:text}`evict_mib:.0f` MiB buffer, and ns/node is reported beside the bandwidth it
# implies (GB/s of 32-byte nodes). In this run the cold ordered-list floor at the target
# was {glue:text}`floor_ns:.2f` ns/node ({glue:text}`floor_gbs:.1f` GB/s).

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effdl_lib.chapter import start
from effdl_lib.chapters import bitmap_allocator as fbf
from effdl_lib.records import glue
from effdl_lib.toolkits import bench

pd.set_option("display.max_colwidth", 400)
_names_before = set(globals())

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu
threads = None  # int [1, 256]
device = None  # str one of cpu, cuda, auto
sizes = None  # tuple[int, ...] [256, 1.67772e+07]
target_n = None  # int [256, 1.67772e+07]
repeats = None  # int [2, 100]
inner = None  # int [1, 50]
seeds = None  # int [1, 50]
obj_sizes = None  # tuple[int, ...] one of 16, 32, 48, 64, 128
w4_n = None  # int [256, 4.1943e+06]
w4_rounds = None  # int [2, 64]
hint_n = None  # int [256, 4.1943e+06]
cache_sizes = None  # tuple[int, ...] [256, 1.67772e+07]
wait_quiet_s = None  # float [0, 600]
ordered_list_max_n = None  # int [256, 1.04858e+06]
preloads = None  # bool
locality_n = None  # int one of 4096
evict_factor = None  # int [0, 64]
w3_ops = None  # int | None [1, 1.67772e+07]

# %% [markdown]
# ## Set-up
#
# One thread; the hardware, the transparent-hugepage mode and the real allocators found
# for `LD_PRELOAD` go into the record.

# %% tags=["hide-input"]
cfg, rt, record = start(fbf, profile, globals(), _names_before)
hw = bench.hardware()
preloads = fbf.available_preloads() if cfg.preloads else {}
real = [a for a in fbf.REAL if a == fbf.GLIBC_SUBPROCESS or a in preloads]
record.extra["system"] = {**hw, "preloads": preloads, "threads": bench.thread_info(),
                          "quiet_rule": fbf.QUIET.text}
print(f"{hw['cpu_model']}, {hw['logical_cpus']} logical CPUs; nominal last-level cache "
      f"{(hw['llc_bytes'] or 0) / 2**20:.0f} MiB; transparent huge pages: {hw['thp']}")
print("real allocators:", ", ".join(real))

# %% [markdown]
# The heart of the method is the lowest-first allocation: a cached lowest non-empty leaf
# word answers most requests with one `ctz`; otherwise the descent takes the lowest set
# bit at every level of the chunk's 64-ary tree (`cython_ext/alloc_pool.h`):
#
# ```{literalinclude} ../cython_ext/alloc_pool.h
# :language: c
# :start-at: static inline void *ap_bitmap_alloc(ap_pool *p)
# :end-before: /* Free slot at or above the hint's slot
# ```
#
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
# a random half, append as many new nodes at the tail, then walk the list. For N = 4,096
# and seed 0: the fraction of steps whose next node is on the same 64-byte line or 4 KiB
# page, the fraction that move forwards in memory, distinct pages per 1,000 consecutive
# nodes, the number of ascending runs the walk splits into, and page entries per page
# (1 = each page visited in one go; k = the walk sweeps the same pages k times). These
# are a pure function of the seed for the pools (CI checks them exactly).

# %%
# NBVAL_CHECK_OUTPUT
pools = ["lifo", "bitmap", "bitmap_hint", "ordered_list"]
small = fbf.locality_over_seeds(pools, cfg.locality_n, seeds=1)
small.set_index("allocator")[["same_line", "same_page", "forward", "pages_per_1000",
                              "ascending_runs", "page_entries_per_page"]].round(4)

# %% [markdown]
# At the claims' size, over seeds, with `malloc` beside the pools. `fresh` is the share
# of the final list's nodes in slots the initial build never used:

# %%
loc = fbf.locality_over_seeds(["malloc", "bitmap", "bitmap_hint"], cfg.target_n, cfg.seeds)
loc.groupby("allocator", sort=False)[["same_page", "forward", "pages_per_1000", "ascending_runs",
                                      "page_entries_per_page", "fresh_fraction"]].mean().round(4)

# %% [markdown]
# **The hint in W1.** With the hint, every appended node asks for the free slot nearest
# above the current tail. The tail is the last node built, and with geometric chunks it
# usually sits in the newest chunk, which the build left partly empty, so the hinted
# pool bump-allocates into never-used memory above it (the `fresh` column:
# {glue:text}`hint_fresh_w1:.0%` of the final list for `bitmap_hint` against
# {glue:text}`bitmap_fresh_w1:.0%` without the hint) instead of refilling the holes.
# That keeps the appended half perfectly sequential, at the price of a larger
# footprint; the W1 `bitmap_hint` row measures that, not hole filling. The hint's own
# claim is tested on W2, where the predecessor is a random node.
#
# ## How we time
#
# Every timed comparison goes through `effdl_lib.toolkits.bench`: each repeat runs every
# arm once, in an order rotated by the repeat index; each run walks its list `inner`
# times and keeps the fastest walk, and the tables give the minimum and the 20 % quantile
# over repeats (interference only adds time). Before every timed walk the C harness
# evicts the caches by touching a buffer of `evict_factor` times the nominal last-level
# cache, so each walk is a cold one whose data comes from memory, not a repeat of the
# walk before it. During every timed section the toolkit
# measures what else the machine did: the busy share of the other core from
# `/proc/stat` (our own CPU time removed), time stolen by the hypervisor, and the
# kernel's CPU pressure; the load average is kept before and after. A timing claim is
# decided only when its section was quiet under the rule fixed in the module; otherwise
# its verdict is "not testable at this scale" and the note keeps the measured value and
# the reason. On this shared machine that is the usual outcome, and it is the honest one:
# interference moves the ratios either way. A memcpy stressor on the other core
# (memory-bandwidth contention) was measured to slow the streaming bitmap walk 4-5x while
# malloc's rose 10-40 %, understating the ratio; many processes sharing the last-level
# cache instead hit malloc's random walk hardest and overstate it. Before timing we wait
# up to `wait_quiet_s` for a quiet window. The harness's core:
#
# ```{literalinclude} ../effdl_lib/toolkits/bench.py
# :pyobject: interleave
# ```

# %% tags=["hide-input"]
ok, seen, waited = (bench.wait_for_quiet(cfg.wait_quiet_s, min(2.0, cfg.wait_quiet_s), fbf.QUIET)
                    if cfg.wait_quiet_s > 0 else (None, None, 0.0))
record.extra["wait_for_quiet"] = {"quiet": ok, "waited_s": waited,
                                  "last_window": seen.as_dict() if seen else None}
print(f"waited {waited:.0f} s; " + ("quiet" if ok else "not quiet" if ok is False else "no wait")
      + (f": {seen.describe()}" if seen else ""))

# %% [markdown]
# ## Where random access leaves the cache
#
# A warm probe: N 32-byte nodes linked in a random order (every step a random access),
# walked back to back for growing N, sizes interleaved over repeats. The cliff is the
# first size from which every walk costs more than 3x the level of the two smallest
# sizes (their minimum; they lie beyond L2, inside L3). This cliff is set by latency and
# TLB reach of a *random* walk, and other tenants sharing the cache move it down; it is
# not the capacity that limits a *streaming* walk, which hardware prefetching keeps fast
# well past it. So the speed-up claim needs more than the cliff: its target must hold at
# least 4x the nominal last-level cache of live nodes (here
# {glue:text}`target_over_llc:.1f`x of {glue:text}`llc_mib:.0f` MiB) *and* lie past the
# cliff, and it is withheld when this sweep's own section was not quiet.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "Random-order list walk over growing working sets (minimum over interleaved repeats). The dotted lines bracket the measured cliff; the dashed line is the nominal last-level cache from sysfs.", "name": "fbf-cache-sweep"}}
cliff_bench, cliff = fbf.cache_sweep(cfg.cache_sizes, repeats=max(2, cfg.repeats - 1), inner=2)
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(np.array(cliff["bytes"]) / 2**20, cliff["ns_min"], marker="o", label="random-order walk")
for b in (cliff["last_below"], cliff["first_above"]):
    if b:
        ax.axvline(b / 2**20, color="tab:red", ls=":", label="cliff bracket" if b == cliff["last_below"] else None)
if hw["llc_bytes"]:
    ax.axvline(hw["llc_bytes"] / 2**20, color="gray", ls="--", label="nominal LLC (sysfs)")
ax.set(xscale="log", yscale="log", xlabel="working set (MiB of 32-byte nodes)",
       ylabel="ns per node (min over repeats)", title="Where the walk leaves the cache")
ax.legend()
ax.grid(alpha=0.3)
plt.show()
print(cliff_bench.interference.describe())

# %% [markdown]
# ## Traversal speed across sizes, with the physical floor
#
# W1 at growing N, every allocator once per repeat in a rotating order. `glibc`,
# `jemalloc`, `mimalloc` and `tcmalloc` run the `malloc` workload in a fresh subprocess,
# the last three through `LD_PRELOAD`. `floor` is the same number of nodes in one array,
# linked in address order (the best layout any allocator can produce), walked by the
# same C loop, and scanned as an array. The ordered list is left out above
# N = 2^16: its O(n) free takes hours at 2^20.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "W1 after churn: cold traversal ns/node (caches evicted before each walk; minimum over interleaved repeats) against live data. Solid: in-process allocators; dashed: real allocators in a subprocess; black: the ordered-list floor and the array scan.", "name": "fbf-sweep"}}
arms = list(fbf.ALLOCATORS) + real + [fbf.FLOOR]
llc = fbf.llc_bytes()
evict = cfg.evict_factor * llc  # bytes touched before every timed walk (0: warm walks)
w1 = {n: fbf.compare(arms, "W1", n, 32, cfg.repeats, inner=cfg.inner, evict_bytes=evict,
                     ordered_list_max_n=cfg.ordered_list_max_n) for n in cfg.sizes}
sweep = pd.concat({n: fbf.table(r) for n, r in w1.items()}, names=["n", "arm"]).reset_index()
fig, ax = plt.subplots(figsize=(7, 4.2))
for name, g in sweep.groupby("arm", sort=False):
    style = "k-" if name.startswith("floor") else "-" if name in fbf.ALLOCATORS else "--"
    ax.plot(g["n"] * 32 / 2**20, g["walk ns/node (min)"], style, marker="o", label=name,
            alpha=0.5 if name == "floor: array scan" else 1)
if cliff["first_above"]:
    ax.axvspan((cliff["last_below"] or cliff["first_above"]) / 2**20, cliff["first_above"] / 2**20,
               color="tab:red", alpha=0.1, label="measured cache cliff")
ax.set(xscale="log", yscale="log", xlabel="live data (MiB of 32-byte nodes)",
       ylabel="traversal ns/node (min over repeats)", title="W1 after churn: traversal time per node")
ax.legend(fontsize=8, ncol=2)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# At the target size, each cold walk as a ratio to the floor (minimum over repeats), the
# node data it streams (GB/s of 32-byte nodes at the minimum), and the interference
# measured while this section ran:

# %%
at_target = fbf.table(w1[cfg.target_n])
floor_ns = at_target.loc["floor: ordered list", "walk ns/node (min)"]
at_target.assign(**{"ratio to floor": at_target["walk ns/node (min)"] / floor_ns}).round(3)

# %% tags=["hide-input"]
print(w1[cfg.target_n].interference.describe())

# %% [markdown]
# ## The price: allocation and free
#
# The whole churn step, in ns per allocation-or-free (minimum over repeats): unlink a
# random node, free it, allocate a new one and append it at the tail. The frees come in
# random order, so the first touch of a scattered slot is a cache miss, and where it is
# paid differs by allocator: a LIFO list (and malloc) reads or writes the link stored
# *in* the slot inside free and alloc, while the bitmap pool touches only its compact
# bitmap there and meets the slot first when the node is written in append. Timing
# alloc and free alone would charge that miss to LIFO and not to the bitmap pool (at
# the target, alloc+free alone gives the bitmap pool {glue:text}`af_bitmap_over_lifo_target:.2f`x
# LIFO's cost), so the claims use the whole step, which charges every arm its own
# misses: there the bitmap pool costs {glue:text}`churn_bitmap_over_lifo_target:.2f`x LIFO
# at the target and {glue:text}`churn_bitmap_over_lifo_small:.2f`x at the smallest size.
# Part of the bitmap pool's advantage at the target is its own locality: it refills the
# holes in ascending order, so its appends write memory forwards. Footprint is bytes
# committed (the pools commit whole geometric chunks, so up to 2x the live data).

# %%
cost = sweep[sweep["n"].isin([min(cfg.sizes), cfg.target_n]) & ~sweep["arm"].str.startswith("floor")]
cost.pivot(index="arm", columns="n", values="churn ns/op (min)").round(1).join(
    cost[cost.n == cfg.target_n].set_index("arm")[["footprint_bytes"]])

# %% [markdown]
# ## Density is not locality: a 48-byte stride
#
# glibc turns a 32-byte request into a 48-byte chunk, so part of a pool's advantage
# could be density alone. With the same stride for malloc and the bitmap pool (two
# repeats, cold walks, at the middle size of the sweep: every walk starts from evicted
# caches, so density matters there as much as at the target):

# %%
mid_n = sorted(cfg.sizes)[len(cfg.sizes) // 2]
stride = {size: fbf.table(w1[mid_n]) if size == 32 else
          fbf.table(fbf.compare(["malloc", "bitmap"], "W1", mid_n, size, 2,
                                inner=cfg.inner, evict_bytes=evict,
                                ordered_list_max_n=cfg.ordered_list_max_n))
          for size in cfg.obj_sizes}
pools_only = [a for a in fbf.ALLOCATORS if a in stride[32].index]
pd.DataFrame({f"{size} B: ns/node (min)": t["walk ns/node (min)"] for size, t in stride.items()}).join(
    pd.DataFrame({f"{size} B: same page": t["same_page"] for size, t in stride.items()})).loc[
    [a for a in pools_only if all(a in t.index for t in stride.values())]].round(3)

# %% [markdown]
# ## Drift over time (W4)
#
# Steady-state churn: every round frees a random half of the list and appends as many
# nodes; the list is walked after each round. Beside the same-page fraction, the walk's
# page entries per page: lowest-first refills the holes in ascending order, but each
# round's new nodes form a fresh ascending pass over the *same* pages, so the list
# becomes a merge of several sparse passes that the same-page fraction cannot see.

# %% tags=["hide-input"] mystnb={"figure": {"caption": "W4 steady churn, mean over seeds: traversal ns/node (minimum of repeats), same-page fraction, and page entries per distinct page (1 = a single pass over memory).", "name": "fbf-drift"}}
dr = fbf.drift(["malloc", "lifo", "bitmap"], cfg.w4_n, cfg.w4_rounds, cfg.seeds, repeats=min(2, cfg.inner),
               evict_bytes=evict)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for name, g in dr.groupby("allocator", sort=False):
    m = g.groupby("round")[["traversal_ns", "same_page", "page_entries_per_page"]].mean()
    for ax, col in zip(axes, m.columns):
        ax.plot(m.index, m[col], marker="o", label=name)
axes[0].set(xlabel="churn round", ylabel="traversal ns/node (min)", yscale="log", title=f"W4, N = {cfg.w4_n:,}")
axes[1].set(xlabel="churn round", ylabel="same-page fraction", ylim=(0, 1.02), title="next node on the same page")
axes[2].set(xlabel="churn round", ylabel="page entries per page", yscale="log", title="passes over the same pages")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend()
plt.show()
print(dr.attrs["interference"].describe())

# %% [markdown]
# ## Hints (W2, W3) and the real allocators on every workload
#
# W2 inserts after, and deletes, random nodes of a list, passing the predecessor as the
# hint; W3 churns a treap with the parent as the hint and walks it in order. Both
# layouts stay random for every allocator: a hint can only help where a free slot lies
# near the hinted address. The real allocators run every workload too, W4 included, so
# that each workload has a "best real allocator" to beat. W2 and W3 run at
# {glue:text}`hint_mib:.1f` MiB of live nodes and W4 at {glue:text}`w4_mib:.1f` MiB, in
# the cpu profile past the random-walk cliff: in an earlier version at 2 and 8 MiB, half
# in the cache, the same arm moved by 25 % to 300 % between runs and two verdicts
# flipped (see the claims below).

# %%
hint = {w: fbf.compare(["bitmap", "bitmap_hint", *real], w, cfg.hint_n, 32, cfg.repeats,
                       inner=cfg.inner, evict_bytes=evict,
                       n_ops=cfg.w3_ops if w == "W3" else None) for w in ("W2", "W3")}
w4 = fbf.compare(["bitmap", *real], "W4", cfg.w4_n, 32, cfg.repeats,
                 inner=1, rounds=cfg.w4_rounds, evict_bytes=evict)  # one walk per round; the minimum is over repeats
glue("hint_mib", cfg.hint_n * fbf.NODE_BYTES / 2**20)
glue("w4_mib", cfg.w4_n * fbf.NODE_BYTES / 2**20)
pd.concat({w: fbf.table(r)[["walk ns/node (min)", "same_page", "page_entries_per_page"]]
           for w, r in {**hint, "W4": w4}.items()}, axis=1).round(3)

# %% [markdown]
# **jemalloc's design.** jemalloc serves a 32-byte request from a *slab* (a page or a
# few pages of same-size regions) and, inside a slab, takes the lowest free region from
# the slab's bitmap; among non-full slabs it prefers the oldest, then the lowest
# address. That is the paper's placement rule, applied per slab. What differs: a
# per-thread cache (tcache) of up to a few hundred recently freed regions per size class
# sits in front and hands them back LIFO, so after a burst of frees the first
# allocations come back in reverse free order while the rest comes from the slab
# bitmaps in address order; "lowest" is per slab, not one global order; and the bitmap
# lives in slab metadata rather than a separate tree. The paper's pool has no cache in
# front, one global address order found in O(log n), and a hint. mimalloc shards free
# lists per 64 KiB page (close in time, close in memory) and tcmalloc keeps LIFO
# per-size free lists; the tables above show where their walks land.

# %% [markdown]
# ## Claims
#
# Rules fixed in `effdl_lib/chapters/bitmap_allocator.py` before the run; locality over
# seeds; ratios by paired bootstrap over interleaved repeats, each repeat's value the
# fastest of its walks. Timing claims carry the interference of their own section.
#
# **Rules changed after a run, and why.** Two quiet runs of the previous version, back to
# back, agreed on 13 of 15 verdicts: `hint-with-slack` went from partly (1.06
# [0.70, 4.39]) to not reproduced (0.79 [0.54, 1.04]) and `beats-best-real-W3` from
# reproduced to partly. Both were measured at 2^16 nodes, half in the cache, where the
# ratio sat at 1 and one run's noise decided the side of the mean. Three changes were
# made before the runs recorded here, none chosen to favour a verdict: W2, W3 and W4
# now run past the cache cliff (above); the hint and best-real claims count a ratio only
# beyond a 10 % margin (the mean must clear 1.1, the CI 1; inside the margin the verdict
# is "not reproduced" in every run, where it used to flip between partly and not); and
# the best real allocator is chosen by its median walk, not its single fastest.

# %%
results = {"cfg": cfg, "loc": loc, "w1": w1, "cliff": cliff, "cliff_bench": cliff_bench,
           "drift": dr, "hint": hint, "w4": w4, "llc_bytes": llc}
record.check_all(fbf.measure(results))
record.extra["interference"] = {
    "cache sweep": cliff_bench.interference.as_dict(),
    **{f"W1 N={n}": r.interference.as_dict() for n, r in w1.items()},
    "W4 drift": dr.attrs["interference"].as_dict(),
    **{f"{w} N={cfg.hint_n}": r.interference.as_dict() for w, r in hint.items()},
    "W4 comparison": w4.interference.as_dict()}
record.extra["cache_cliff"] = cliff
record.table()

# %% tags=["hide-input"]
h = fbf.headline(results)
for key in ("target_mib", "malloc_over_bitmap_min", "bitmap_over_floor_min", "malloc_over_floor_min",
            "floor_ns", "scan_ns", "bitmap_ns", "malloc_ns", "same_page_bitmap", "same_page_malloc",
            "floor_gbs", "scan_gbs", "bitmap_gbs", "malloc_gbs", "llc_mib", "target_over_llc",
            "evict_mib", "churn_bitmap_over_lifo_target", "churn_bitmap_over_lifo_small",
            "af_bitmap_over_lifo_target", "churn_bitmap_target", "churn_lifo_target",
            "hint_fresh_w1", "bitmap_fresh_w1", "cliff_lo_mib", "cliff_hi_mib", "cliff_in_cache_ns",
            "quiet_sections", "sections", "interference_target", "loadavg_before", "loadavg_after",
            "w4_first", "w4_last", *[k for k in h if k.startswith("w4_") and k[3:4] in "mb"]):
    glue(key, h[key])
idle = fbf.REVIEW_IDLE
glue("idle_ratio", f"{idle['malloc_over_bitmap_w1_2e20'][0]:.0f}-{idle['malloc_over_bitmap_w1_2e20'][1]:.0f}x")
glue("idle_floor", f"{idle['floor_ns'][0]}-{idle['floor_ns'][1]} ns/node")
glue("idle_cliff", f"{idle['cliff_mib'][0]}-{idle['cliff_mib'][1]} MiB")
glue("jemalloc_layout", h["jemalloc_layout"])
glue("best_real_text", "; ".join(
    f"{w}: {b} {h['walks'][w][b]:.1f} against the bitmap pool's {h['walks'][w]['bitmap']:.1f} ns/node"
    for w, b in h["best_real"].items() if b))

# %% [markdown]
# **Reading the record.** At {glue:text}`target_mib:.0f` MiB of live 32-byte nodes the
# next node of the list is on the same page {glue:text}`same_page_bitmap:.1%` of the time
# with the bitmap pool against {glue:text}`same_page_malloc:.1%` with glibc malloc. In
# this run, walking cold from memory ({glue:text}`target_over_llc:.0f`x the nominal
# last-level cache), the bitmap walk took {glue:text}`bitmap_ns:.2f` ns/node
# ({glue:text}`bitmap_gbs:.1f` GB/s of nodes), the ordered-list floor
# {glue:text}`floor_ns:.2f` ({glue:text}`floor_gbs:.1f` GB/s), the array scan
# {glue:text}`scan_ns:.2f` ({glue:text}`scan_gbs:.1f` GB/s) and malloc's list
# {glue:text}`malloc_ns:.1f` ({glue:text}`malloc_gbs:.2f` GB/s): the bitmap
# list walks at {glue:text}`bitmap_over_floor_min:.2f`x the floor (the mechanism
# predicts about 2x: two ascending passes over the same memory), while malloc's walks at
# {glue:text}`malloc_over_floor_min:.0f`x the floor, {glue:text}`malloc_over_bitmap_min:.1f`x
# the bitmap pool (ratio of minima). An independent idle re-measurement at 32 MiB of
# live nodes found {glue:text}`idle_ratio` for malloc over bitmap and a floor of
# {glue:text}`idle_floor`; the random walk's cache cliff here lies between
# {glue:text}`cliff_lo_mib:.1f` and {glue:text}`cliff_hi_mib:.1f` MiB (idle:
# {glue:text}`idle_cliff`), well below the nominal last-level cache, for the reason
# given with the sweep. On a loaded machine both walks share memory bandwidth and the
# cache with other tenants, so these ratios move between runs; none is a verdict here
# unless the section was quiet.
#
# **Was the machine quiet?** {glue:text}`quiet_sections` of {glue:text}`sections` timed
# sections were quiet. At the target size: {glue:text}`interference_target`. Timing
# claims from a loaded section are reported as not testable with the measured value in
# their note; the locality claims are deterministic and decided regardless.
#
# **Drift.** From round {glue:text}`w4_first` to round {glue:text}`w4_last` of W4, the
# bitmap list keeps its same-page fraction ({glue:text}`w4_bitmap_page_first:.1%` to
# {glue:text}`w4_bitmap_page_last:.1%`; malloc {glue:text}`w4_malloc_page_first:.1%` to
# {glue:text}`w4_malloc_page_last:.1%`), but its walk enters each page
# {glue:text}`w4_bitmap_entries_first:.1f` times after the first round and
# {glue:text}`w4_bitmap_entries_last:.1f` times after the last, and its walk goes from
# {glue:text}`w4_bitmap_ns_first:.1f` to {glue:text}`w4_bitmap_ns_last:.1f` ns/node
# (malloc: {glue:text}`w4_malloc_ns_first:.1f` to {glue:text}`w4_malloc_ns_last:.1f`).
# So lowest-first preserves *order within each pass* but not a single pass: under
# repeated random frees and appends the list becomes a merge of ascending runs over the
# same pages, each sparser than the last. The paper's claim that the allocator keeps
# locality "across randomly ordered allocations and deallocations" holds for one round
# of churn and for the same-page measure; for steady churn it holds only partly, as the
# `drift-single-pass` verdict records.
#
# **The real alternative.** Best real allocator per workload (chosen by its median walk;
# the figures are the fastest walks of each):
# {glue:text}`best_real_text`. The layouts say why: {glue:text}`jemalloc_layout`.
# jemalloc's slabs already place by lowest free region, so its list after churn has
# nearly the bitmap pool's shape; its thread cache (LIFO) and the per-slab rather than
# global order are where the paper's design still differs. W2 and W3 scatter every
# allocator's layout alike, so their timings say little about placement either way.
#
# **Limits.** One machine, shared and virtualised; no hardware counters, so cache
# behaviour is inferred from the deterministic layout metrics and timings. Empty chunks
# are never returned to the system. The workloads are synthetic; the paper's own
# benchmarks and numbers were not available.

# %%
record.write();
