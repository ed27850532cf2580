"""Fast Bitmap Fit pools: model-based property tests, misuse, and deterministic locality
of the C workloads (never wall times)."""
import ctypes
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effdl_lib.chapters import bitmap_allocator as B
from effdl_lib.chapters.bitmap_allocator import (BitmapPool, DoubleFreeError, ForeignPointerError,
                                        LifoPool, OrderedFreeListPool, PoolExhausted,
                                        SystemAllocator)

POOL_CLASSES = [BitmapPool, LifoPool, OrderedFreeListPool]
PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
REPO = Path(__file__).resolve().parent.parent


def test_extension_imports():
    from effdl_lib import _allocator
    assert set(B.ALLOCATORS) == set(_allocator.ALLOCATOR_KINDS)
    for cls in (*POOL_CLASSES, SystemAllocator):
        assert issubclass(cls, _allocator._Pool)
    assert issubclass(PoolExhausted, MemoryError)
    assert issubclass(DoubleFreeError, ValueError)
    assert not (REPO / "cython_ext" / "alloc_pyobj.h").exists()  # layout comes from the .pxd


# ---- model-based property test -------------------------------------------------------

class Model:
    """Reference state of one pool: live addresses, free committed slots, and what each
    pool kind must hand out next (pools: exact address; malloc: only uniqueness)."""

    def __init__(self, pool, cls, capacity, initial_slots):
        self.pool, self.cls, self.capacity = pool, cls, capacity
        self.initial_slots = initial_slots
        self.live = []          # ordered, so indices from hypothesis pick members
        self.freed = []         # addresses freed and not handed out again
        self.free = set()       # pools: committed, not allocated
        self.lifo = []          # LifoPool: free slots, most recent last
        self.bump = 0           # LifoPool: slots ever handed out
        self.n_slots = 0

    def stride(self):
        return self.pool.obj_size

    def sync_growth(self):
        """Account for chunks committed by the last alloc; check their geometry."""
        if self.cls is SystemAllocator or self.pool.n_slots == self.n_slots:
            return
        bounds = self.pool.chunk_bounds()
        first = 0
        init = self.initial_slots
        for c, (start, n) in enumerate(bounds):
            assert start == self.pool.base + first * self.stride()  # adjacent, ascending
            expect = init << c
            if self.capacity is not None:
                expect = min(expect, self.capacity - first)
            assert n == expect
            first += n
        assert first == self.pool.n_slots
        for s in range(self.n_slots, self.pool.n_slots):
            self.free.add(self.pool.base + s * self.stride())
        self.n_slots = self.pool.n_slots

    def expected(self, hint):
        if self.cls is OrderedFreeListPool or (self.cls is BitmapPool and hint is None):
            return min(self.free)
        if self.cls is BitmapPool:
            start, n = next((s, n) for s, n in self.pool.chunk_bounds()
                            if s <= hint < s + n * self.stride())
            above = [a for a in self.free if hint <= a < start + n * self.stride()]
            return min(above) if above else min(self.free)
        if self.cls is LifoPool:
            return self.lifo[-1] if self.lifo else self.pool.base + self.bump * self.stride()
        return None

    def can_alloc(self):
        if self.cls is SystemAllocator:
            return self.capacity is None or len(self.live) < self.capacity
        return bool(self.free) or self.capacity is None or self.n_slots < self.capacity

    def alloc(self, hint):
        if not self.can_alloc():
            with pytest.raises(PoolExhausted):
                self.pool.alloc(hint=hint)
            return
        addr = self.pool.alloc(hint=hint)
        self.sync_growth()
        assert addr not in self.live, "slot handed out twice"
        want = self.expected(hint)
        if want is not None:
            assert addr == want
        if self.cls is not SystemAllocator:
            self.free.remove(addr)
        if self.cls is LifoPool:
            if self.lifo:
                self.lifo.pop()
            else:
                self.bump += 1
        if addr in self.freed:
            self.freed.remove(addr)
        self.live.append(addr)

    def release(self, i):
        addr = self.live.pop(i % len(self.live))
        self.pool.free(addr)
        self.freed.append(addr)
        if self.cls is not SystemAllocator:
            self.free.add(addr)
        if self.cls is LifoPool:
            self.lifo.append(addr)

    def check(self, bits=True):
        p = self.pool
        assert p.n_used == len(self.live) == len(set(self.live))
        assert p.n_free + p.n_used == p.n_slots
        assert all(p.owns(a) for a in self.live)
        if self.cls is SystemAllocator:
            return
        assert p.n_slots == self.n_slots and p.n_free == len(self.free)
        assert not self.free & set(self.live)
        if bits and self.cls is BitmapPool:  # the bits themselves agree with the model
            assert p.free_addresses() == sorted(self.free)


# allocations outnumber frees so that pools span several chunks and leaf words
OPS = ("alloc",) * 4 + ("alloc_hint",) * 2 + ("free",) * 3 + ("double_free", "foreign")
ops = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16)), max_size=60)


def run_model(cls, obj_size, initial_slots, capacity, seq, bits_every=1):
    if cls is SystemAllocator:
        pool = cls(obj_size=obj_size, capacity=capacity)
    else:
        pool = cls(obj_size=obj_size, capacity=capacity, initial_slots=initial_slots)
    m = Model(pool, cls, capacity, initial_slots)
    for step, (op, arg) in enumerate(seq):
        if op == "alloc":
            m.alloc(None)
        elif op == "alloc_hint" and m.live:
            m.alloc(m.live[arg % len(m.live)])
        elif op == "free" and m.live:
            m.release(arg)
        elif op == "double_free" and m.freed:
            with pytest.raises(DoubleFreeError):
                pool.free(m.freed[arg % len(m.freed)])
        elif op == "foreign" and m.live:
            a = m.live[0]
            bad = [a + 4, a + 1, a - (1 << 40) if a > (1 << 40) else a + (1 << 44),
                   (pool.base + pool.n_slots * obj_size) if pool.base else a + 3][arg % 4]
            with pytest.raises(ForeignPointerError):
                pool.free(bad)
        m.check(bits=step % bits_every == 0)
    # every freed slot is reusable: drain the free slots without growing
    if cls is not SystemAllocator:
        want = set(m.free)
        got = {pool.alloc() for _ in range(len(want))}
        assert got == want and pool.n_free == 0 and pool.n_slots == m.n_slots
    return pool


@pytest.mark.parametrize("cls", POOL_CLASSES + [SystemAllocator])
@PROPS
@given(obj_size=st.sampled_from([8, 16, 32, 48]),
       initial_slots=st.sampled_from([1, 2, 4, 64]),
       capacity=st.one_of(st.none(), st.integers(1, 40)),
       seq=ops)
def test_pool_matches_model(cls, obj_size, initial_slots, capacity, seq):
    run_model(cls, obj_size, initial_slots, capacity, seq)


@pytest.mark.parametrize("cls", POOL_CLASSES + [SystemAllocator])
@pytest.mark.parametrize("seed", range(3))
def test_pool_matches_model_long_random(cls, seed):
    """Long seeded sequences reach bigger pools (several leaf words per chunk) and
    phases of net growth and net shrinkage."""
    rng = random.Random(seed)
    seq = []
    for phase in range(6):
        weights = [6, 2, 3, 1, 1] if phase % 2 == 0 else [2, 1, 6, 1, 1]
        kinds = rng.choices(["alloc", "alloc_hint", "free", "double_free", "foreign"],
                            weights, k=400)
        seq += [(k, rng.randrange(1 << 16)) for k in kinds]
    run_model(cls, 16, [1, 4, 64][seed], None if seed < 2 else 700, seq, bits_every=25)


@PROPS
@given(seq=st.lists(st.tuples(st.booleans(), st.integers(0, 1 << 16)), max_size=80))
def test_ordered_list_and_bitmap_place_identically(seq):
    """Both are lowest-first over the same chunk geometry: same offsets always."""
    pools = [BitmapPool(16, initial_slots=2), OrderedFreeListPool(16, initial_slots=2)]
    live = [[], []]
    for is_alloc, i in seq:
        for p, lv in zip(pools, live):
            if is_alloc or not lv:
                lv.append(p.alloc())
            else:
                p.free(lv.pop(i % len(lv)))
        assert [a - pools[0].base for a in live[0]] == [a - pools[1].base for a in live[1]]


# ---- misuse --------------------------------------------------------------------------

@pytest.mark.parametrize("cls", POOL_CLASSES + [SystemAllocator])
def test_misuse_raises(cls):
    pool = cls(obj_size=32, capacity=3)
    a, b, c = pool.alloc(), pool.alloc(), pool.alloc()
    with pytest.raises(PoolExhausted, match="capacity 3"):
        pool.alloc()
    assert pool.n_used == 3
    pool.free(b)
    with pytest.raises(DoubleFreeError):
        pool.free(b)
    for bad in (a + 8, a + 1, a - 4096 * 1024):
        with pytest.raises(ForeignPointerError):
            pool.free(bad)
    with pytest.raises(ForeignPointerError):
        pool.free(-1)
    with pytest.raises(TypeError):
        pool.free("0x10")
    assert not pool.owns(a + 8) and not pool.owns(None)
    assert pool.n_used == 2
    assert pool.alloc() == b or cls is SystemAllocator
    pool.free(a)
    pool.free(c)


@pytest.mark.parametrize("cls", POOL_CLASSES)
def test_pool_specific_misuse(cls):
    pool = cls(obj_size=32, initial_slots=64)
    a = pool.alloc()
    never = pool.base + 10 * 32               # committed, never handed out
    with pytest.raises(DoubleFreeError):
        pool.free(never)
    with pytest.raises(ForeignPointerError):  # reserved but not committed
        pool.free(pool.base + pool.n_slots * 32)
    with pytest.raises(ForeignPointerError):
        pool.alloc(hint=a + 3)
    other = cls(obj_size=32)
    with pytest.raises(ForeignPointerError):
        other.free(a)
    assert pool.n_used == 1 and other.n_used == 0


@pytest.mark.parametrize("kwargs", [dict(obj_size=12), dict(obj_size=0), dict(obj_size=1 << 20),
                                    dict(initial_slots=3), dict(initial_slots=0),
                                    dict(initial_slots=1 << 31), dict(capacity=0)])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        BitmapPool(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(initial_slots=3), "initial_slots must be a power of two"),
    (dict(initial_slots=0), "initial_slots must be a power of two"),
    (dict(initial_slots=1 << 40), "initial_slots must be a power of two"),
    (dict(initial_slots=2.0), "initial_slots must be a power of two"),
    (dict(obj_size=1 << 20), "obj_size must be a multiple of 8"),
    (dict(obj_size=40 + 4), "obj_size must be a multiple of 8"),
])
def test_run_workload_bad_sizes_are_value_errors(kwargs, message):
    """A bad initial_slots or obj_size is a ValueError, never a MemoryError."""
    with pytest.raises(ValueError, match=message):
        B.run_workload("bitmap", "W1", n=64, **kwargs)


def test_slot_is_free_checks_bounds():
    pool = BitmapPool(obj_size=32, initial_slots=4)
    a = pool.alloc()
    assert pool.slot_is_free(0) is False and pool.slot_is_free(3) is True
    pool.free(a)
    assert pool.slot_is_free(0) is True
    for bad in (4, -1, 1 << 40):  # beyond the committed chunk, negative, far away
        with pytest.raises(IndexError, match="not a committed slot"):
            pool.slot_is_free(bad)


def test_metadata_is_apart_from_objects():
    """Scribbling over whole objects cannot damage a bitmap pool."""
    pool = BitmapPool(obj_size=48, initial_slots=4)
    live = [pool.alloc() for _ in range(100)]
    for a in live:
        ctypes.memset(a, 0xFF, 48)
    for a in live[::2]:
        pool.free(a)
    never_used = [pool.base + s * 48 for s in range(100, pool.n_slots)]  # 4+8+...+64
    assert pool.n_slots == 124
    assert pool.free_addresses() == sorted(live[::2]) + never_used
    assert [pool.alloc() for _ in range(50)] == sorted(live[::2])
    assert pool.metadata_bytes > 0 and pool.base % 4096 == 0


def test_geometric_chunks_and_capacity():
    pool = BitmapPool(obj_size=32, capacity=50, initial_slots=4)
    for _ in range(50):
        pool.alloc()
    assert [n for _, n in pool.chunk_bounds()] == [4, 8, 16, 22]
    assert pool.n_slots == 50 and pool.n_free == 0
    with pytest.raises(PoolExhausted):
        pool.alloc()


# ---- workloads: deterministic locality -----------------------------------------------

def w1(alloc, obj_size=32, **kw):
    return B.run_workload(alloc, "W1", n=1 << 10, obj_size=obj_size, seed=7, repeats=1,
                          return_addresses=True, **kw)


def exact(x, num):  # fractions of the 1023 successor steps, computed the same way
    assert x == num / 1023


@pytest.mark.parametrize("obj_size, same_page, pages", [(32, 1008, 8), (48, 1000, 12)])
def test_w1_locality_pinned(obj_size, same_page, pages):
    bm, lifo = w1("bitmap", obj_size), w1("lifo", obj_size)
    # survivors ascend, the appended tail ascends from the lowest hole: one step back
    exact(bm["forward"], 1022)
    exact(bm["same_page"], same_page)
    assert bm["pages_touched"] == pages and bm["footprint_slots"] == 1984
    exact(lifo["forward"], 759)
    assert lifo["forward"] < bm["forward"] and lifo["same_page"] < bm["same_page"]
    hint = w1("bitmap_hint", obj_size)
    exact(hint["forward"], 1023)     # the tail goes to the fresh slots above the last node
    assert hint["pages_touched"] > bm["pages_touched"]
    ordered = w1("ordered_list", obj_size)
    assert np.array_equal(ordered["addresses"] - np.uint64(ordered["arena_base"]),
                          bm["addresses"] - np.uint64(bm["arena_base"]))
    offsets = bm["addresses"] - np.uint64(bm["arena_base"])
    assert np.all(offsets % np.uint64(obj_size) == 0)


@pytest.mark.parametrize("workload", B.WORKLOADS)
@pytest.mark.parametrize("alloc", ["lifo", "bitmap", "bitmap_hint", "ordered_list"])
def test_workloads_deterministic_for_pools(workload, alloc):
    kw = dict(n=600, seed=3, repeats=2, rounds=3, return_addresses=True)
    r1, r2 = (B.run_workload(alloc, workload, **kw) for _ in range(2))
    rel = [r["addresses"] - np.uint64(r["arena_base"]) for r in (r1, r2)]
    assert np.array_equal(*rel)
    for k in ("same_line", "same_page", "forward", "pages_per_1000", "pages_touched",
              "footprint_bytes", "n_nodes"):
        assert r1[k] == r2[k]
    assert len(np.unique(r1["addresses"])) == r1["n_nodes"]
    if workload in ("W1", "W3", "W4"):
        assert r1["n_nodes"] == 600
    assert len(r1["traversal_ns_rounds"]) == (3 if workload == "W4" else 1)
    assert len(r1["traversal_ns"]) == 2 and r1["traversal_ns_median"] > 0


def test_w4_round_locality_and_malloc():
    r = B.run_workload("bitmap", "W4", n=1 << 10, seed=1, repeats=1, rounds=4,
                       round_locality=True)
    assert len(r["locality_rounds"]) == 4
    assert all(lr["forward"] > 0.99 for lr in r["locality_rounds"])
    m = B.run_workload("malloc", "W1", n=1 << 10, repeats=2, return_addresses=True)
    assert m["arena_base"] is None and m["footprint_bytes"] >= 32 * 1024
    assert len(np.unique(m["addresses"])) == 1024 and 0 <= m["same_page"] <= 1


def test_workload_argument_checks():
    with pytest.raises(ValueError):
        B.run_workload("bitmap", "W9")
    with pytest.raises(ValueError):
        B.run_workload("slab", "W1")
    with pytest.raises(ValueError):
        B.run_workload("bitmap", "W1", obj_size=24)


def test_compare_interleaves_with_floor_and_skips():
    res = B.compare(["lifo", "bitmap", "ordered_list", B.FLOOR], "W1", n=1 << 10,
                    repeats=2, inner=1, ordered_list_max_n=1 << 9)
    assert res.arms == ["lifo", "bitmap", B.FLOOR]
    assert res.waited["skipped"] == ["ordered_list"]
    assert [r["arm"] for r in res.rows] == ["lifo", "bitmap", B.FLOOR, "bitmap", B.FLOOR, "lifo"]
    t = B.table(res)
    assert {"floor: ordered list", "floor: array scan", "bitmap", "lifo"} == set(t.index)
    assert t.loc["bitmap", "same_page"] > t.loc["lifo", "same_page"]
    assert t.loc["bitmap", "page_entries_per_page"] == 2.0   # two ascending passes
    assert 0 <= res.interference.other_busy <= 1
    with pytest.raises(ValueError, match="unknown arms"):
        B.compare(["slab"], n=64, repeats=2)


def test_floor_walk_and_layout_walk_arguments():
    from effdl_lib._allocator import layout_walk
    f = B.floor_walk(1 << 10, repeats=2)
    assert f["n"] == 1024 and f["bytes"] == 32 * 1024 and len(f["list_ns"]) == 2
    assert len(f["scan_ns"]) == 2 and f["list_ns_min"] > 0
    r = layout_walk(100, False, 3, 1, False)
    assert r["scan_ns"] == [] and not r["ordered"]
    for kw in (dict(n=1), dict(n=10, repeats=0), dict(n=10, repeats=5000)):
        with pytest.raises(ValueError):
            layout_walk(**kw)


def test_cache_sweep_structure():
    res, cliff = B.cache_sweep([1 << 8, 1 << 9, 1 << 10], repeats=2)
    assert res.arms == ["256", "512", "1024"] and cliff["bytes"] == [8192, 16384, 32768]
    assert len(cliff["ns_min"]) == 3 and cliff["base"] > 0
    with pytest.raises(ValueError):
        B.cache_sweep([256, 512])


def test_hint_in_w1_bump_allocates_fresh_memory():
    """At 2^10 with 64-slot initial chunks the tail sits in a half-empty chunk: the hint
    sends the appended half above slot n, lowest-first refills the holes."""
    hint, plain = w1("bitmap_hint"), w1("bitmap")
    assert plain["fresh_fraction"] == 0.0
    assert hint["fresh_fraction"] == pytest.approx(0.5, abs=0.01)
    assert hint["page_entries_per_page"] == 1.0 and plain["page_entries_per_page"] == 2.0
    assert np.isnan(w1("malloc")["fresh_fraction"])


def test_w4_passes_grow_with_rounds_for_bitmap():
    """Every W4 round adds an ascending pass over the same pages: page entries per page
    grow (roughly one per round) while the same-page fraction stays high."""
    r = B.run_workload("bitmap", "W4", n=1 << 12, seed=2, repeats=1, rounds=4,
                       round_locality=True)
    entries = [lr["page_entries_per_page"] for lr in r["locality_rounds"]]
    assert entries[0] == 2.0 and all(b > a for a, b in zip(entries, entries[1:]))
    assert all(lr["same_page"] > 0.9 for lr in r["locality_rounds"])


def test_subprocess_glibc_and_preloads():
    r = B.run_in_subprocess(None, "W1", n=1 << 10, repeats=1)
    assert r["allocator"] == "glibc" and r["n_nodes"] == 1024 and "addresses" not in r
    preloads = B.available_preloads()
    if not preloads:
        pytest.skip("no LD_PRELOAD allocator installed")
    name = sorted(preloads)[0]
    r = B.run_in_subprocess(name, "W1", n=1 << 10, repeats=1)
    assert r["allocator"] == name and r["preload_active"] is True


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                    reason="no C compiler")
def test_pxd_usable_from_cython(tmp_path):
    """Another Cython module reaches a BitmapPool's C pool through effdl_lib/_allocator.pxd."""
    (tmp_path / "consumer.pyx").write_text(textwrap.dedent("""
        # cython: language_level=3
        from effdl_lib._allocator cimport ap_alloc, ap_free, BitmapPool
        def churn(BitmapPool pool, int n):
            cdef void* p
            cdef int i, rc = 0
            with nogil:
                for i in range(n):
                    p = ap_alloc(pool.pool, NULL)
                    rc |= ap_free(pool.pool, p)
            return rc, <size_t>ap_alloc(pool.pool, NULL) - <size_t>pool.pool.base
    """))
    ext = REPO / "cython_ext"
    (tmp_path / "setup.py").write_text(textwrap.dedent(f"""
        from Cython.Build import cythonize
        from setuptools import Extension, setup
        setup(ext_modules=cythonize(
            [Extension("consumer", ["consumer.pyx"], include_dirs=[{str(ext)!r}])],
            include_path=[{str(ext)!r}, {str(REPO)!r}], quiet=True))
    """))
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
                   cwd=tmp_path, check=True, capture_output=True)
    sys.path.insert(0, str(tmp_path))
    try:
        import consumer
        pool = BitmapPool(32)
        first = pool.alloc()
        assert consumer.churn(pool, 100) == (0, 32)
        assert pool.n_used == 2 and first == pool.base
        with pytest.raises(TypeError):          # the generated layout type-checks
            consumer.churn(B.LifoPool(32), 1)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("consumer", None)


# ---------------------------------------------------------------- chapter configuration

@pytest.mark.parametrize("overrides, message", [
    ({"target_n": 12345}, "must be one of sizes"),
    ({"sizes": [16]}, "'sizes' must be"),
    ({"obj_sizes": [48]}, "obj_sizes must include 32"),
    ({"obj_sizes": [24, 32]}, "'obj_sizes' must be one of"),
    ({"repeats": 1}, "'repeats' must be"),
    ({"cache_sizes": [4096, 4096, 8192]}, "at least 3 sizes"),
    ({"wait_quiet_s": -1.0}, "'wait_quiet_s' must be"),
    ({"locality_n": 1 << 10}, "'locality_n' must be one of"),
    ({"preload": False}, "unknown parameter 'preload'"),
])
def test_chapter_config_rejects_bad_values(overrides, message):
    from effdl_lib.config import ConfigError
    with pytest.raises(ConfigError, match=message):
        B.Config.resolve("cpu", overrides)


def test_chapter_profiles_and_claims():
    from effdl_lib.chapter import check_chapter
    assert check_chapter(B) == []
    smoke, cpu = B.Config.resolve("smoke"), B.Config.resolve("cpu")
    assert max(smoke.sizes) <= 1 << 14 and max(cpu.sizes) <= 1 << 22
    # the cpu target is 4x this machine's (32 MiB) LLC: 2^22 nodes x 32 B = 128 MiB
    assert cpu.target_n * 32 >= 4 * (32 << 20) and max(cpu.cache_sizes) * 32 >= 32 << 20
    assert cpu.evict_factor >= 4 and smoke.evict_factor == cpu.evict_factor
    assert B.CLAIMS["paper-speedups"].rule.decide(None) == "not testable at this scale"
    assert set(B.TIMING_CLAIMS) <= set(B.CLAIMS)
    assert {f"beats-best-real-{w}" for w in B.WORKLOADS} <= set(B.CLAIMS)


# ---- measure(): verdict inputs from hand-made results ----------------------------------

from effdl_lib.claims import NOT_TESTABLE, REPRODUCED, match_measurements  # noqa: E402
from effdl_lib.stats import bootstrap_ratio  # noqa: E402
from effdl_lib.toolkits import bench  # noqa: E402

QUIET_I = bench.Interference(10.0, 0.02, 0.0, 0.01, 10.0, 2, (0.1, 0.1, 0.1), (0.1, 0.1, 0.1))
LOADED_I = bench.Interference(10.0, 0.95, 0.0, 0.60, 10.0, 2, (1.9, 1.5, 1.0), (2.0, 1.6, 1.0))


def fake_bench(values, interference=QUIET_I, n=None):
    """A BenchResult holding ``values[arm][metric]`` per repeat."""
    arms = list(values)
    reps = len(next(iter(next(iter(values.values())).values())))
    rows = [{"arm": a, "repeat": r, "position": 0, "quiet": interference.quiet(B.QUIET),
             **{m: v[r] for m, v in values[a].items()}} for r in range(reps) for a in arms]
    return bench.BenchResult(arms, reps, rows, interference, [interference] * reps, {},
                             B.QUIET, {"n": n})


def fake_results(interference=QUIET_I, first_above=8 << 20, llc=8 << 20):
    import pandas as pd
    cfg = B.Config.resolve("smoke", {"sizes": [1 << 12, 1 << 20], "target_n": 1 << 20})
    loc = pd.DataFrame({"allocator": ["bitmap"] * 3 + ["malloc"] * 3, "seed": [0, 1, 2] * 2,
                        "same_page": [0.98, 0.97, 0.99, 0.5, 0.5, 0.5],
                        "forward": [1.0, 1.0, 1.0, 0.75, 0.70, 0.80]})
    t = lambda *v: {"traversal_ns": list(v), "alloc_free_ns": [10.0] * len(v),
                    "churn_ns": [20.0 + x for x in v], "scan_ns": [1.0] * len(v)}
    lay = lambda d, e, p: {**d, "page_entries_per_page": [e] * 3, "same_page": [p] * 3}
    w1_big = fake_bench({"malloc": t(100.0, 120.0, 110.0), "lifo": t(90.0, 95.0, 92.0),
                         "bitmap": lay(t(5.0, 6.0, 5.5), 2.0, 0.98), B.FLOOR: t(2.5, 2.6, 2.4),
                         "glibc": lay(t(101.0, 99.0, 100.0), 30.0, 0.5),
                         "jemalloc": lay(t(6.0, 7.0, 6.5), 2.5, 0.4)},
                        interference, n=1 << 20)
    w1_small = fake_bench({"bitmap": t(1.0, 1.0), "lifo": t(1.0, 1.0)}, interference, n=1 << 12)
    rounds = pd.DataFrame({"allocator": ["malloc"] * 4 + ["bitmap"] * 4,
                           "seed": [0, 0, 1, 1] * 2, "round": [1, 2] * 4,
                           "same_page": [0.5, 0.2, 0.5, 0.3, 0.98, 0.97, 0.98, 0.96],
                           "page_entries_per_page": [20, 40, 20, 40, 2.0, 3.0, 2.0, 3.2],
                           "traversal_ns": [10, 40, 10, 30, 2, 4, 2, 5]})
    rounds.attrs["interference"] = interference
    other = fake_bench({"bitmap": t(3.0, 3.0), "bitmap_hint": t(2.0, 2.0),
                        "tcmalloc": t(4.0, 4.0), "glibc": t(5.0, 6.0)}, interference, n=4096)
    cliff = {"base": 14.0, "last_below": 4 << 20, "first_above": first_above}
    return {"cfg": cfg, "loc": loc, "w1": {1 << 12: w1_small, 1 << 20: w1_big},
            "cliff": cliff, "cliff_bench": fake_bench({"x": {"ns": [1.0, 1.0]}}, interference),
            "llc_bytes": llc, "drift": rounds, "hint": {"W2": other, "W3": other}, "w4": other}


def test_measure_on_a_quiet_machine_by_hand():
    m = B.measure(fake_results())
    assert [c.id for c, _ in match_measurements(B.CLAIMS, m)] == list(B.CLAIMS)
    assert m["ascending-layout"].estimate.mean == pytest.approx(0.98)
    assert m["ascending-layout"].estimate.n == 1 and "seeds range 0.9700-0.9900" in m["ascending-layout"].note
    assert B.CLAIMS["ascending-layout"].rule.decide(m["ascending-layout"].estimate) == REPRODUCED
    # churn ns/op (unlink + free + alloc + append), not alloc+free: bitmap 20+v vs lifo 20+v
    assert m["alloc-cost-vs-lifo"].estimate.mean == pytest.approx((25 + 26 + 25.5) / (110 + 115 + 112))
    assert m["alloc-cost-in-cache"].estimate.mean == pytest.approx(1.0)
    assert m["forward-vs-malloc"].estimate.mean == pytest.approx(0.25)
    floor = m["walk-near-floor"].estimate
    assert floor.mean == pytest.approx(16.5 / 7.5)
    want = bootstrap_ratio([5.0, 6.0, 5.5], [2.5, 2.6, 2.4], paired=True)
    assert (floor.ci_low, floor.ci_high) == pytest.approx((want.ci_low, want.ci_high))
    assert m["traversal-speedup"].estimate.mean == pytest.approx(330 / 16.5)
    assert "between 4.0 MiB and 8.0 MiB" in m["traversal-speedup"].note
    assert "4.0x the nominal LLC (8.0 MiB" in m["traversal-speedup"].note
    assert m["beats-best-real-W1"].estimate.mean == pytest.approx(19.5 / 16.5)
    assert m["beats-best-real-W1"].note.startswith("best real: jemalloc")
    assert m["beats-best-real-W2"].estimate.mean == pytest.approx(4.0 / 3.0)  # tcmalloc
    assert m["hint-with-slack"].estimate.mean == pytest.approx(1.5)
    assert m["drift-single-pass"].estimate.mean == pytest.approx(3.1)
    assert B.CLAIMS["drift-single-pass"].rule.decide(m["drift-single-pass"].estimate) != REPRODUCED
    assert m["drift-layout"].estimate.mean == pytest.approx(((0.3 - 0.01) + (0.2 - 0.02)) / 2)
    assert m["drift-time"].estimate.mean == pytest.approx(((4 - 2) + (3 - 2.5)) / 2)
    assert m["paper-speedups"].estimate is None


def test_measure_withholds_every_timing_verdict_when_loaded():
    m = B.measure(fake_results(LOADED_I))
    for cid in B.TIMING_CLAIMS:
        assert m[cid].estimate is None, cid
        assert B.CLAIMS[cid].rule.decide(m[cid].estimate) == NOT_TESTABLE
        assert "withheld: machine loaded" in m[cid].note and "measured" in m[cid].note
    for cid in ("ascending-layout", "forward-vs-malloc", "drift-layout", "drift-single-pass"):
        assert m[cid].estimate is not None, cid   # deterministic: decided regardless


def test_speedup_gated_on_four_times_the_llc_and_the_cliff():
    inside = B.measure(fake_results(first_above=64 << 20))["traversal-speedup"]
    assert inside.estimate is None and "not beyond the cache" in inside.note
    # 32 MiB of nodes against a 32 MiB LLC: 1x, not beyond (the old gate said yes)
    at_llc = B.measure(fake_results(llc=32 << 20))["traversal-speedup"]
    assert at_llc.estimate is None and "1.0x the nominal LLC" in at_llc.note
    none = B.measure(fake_results(first_above=None))["traversal-speedup"]
    assert none.estimate is not None and "no random-walk cliff" in none.note
    ok, why = B.beyond_cache(128 << 20, 32 << 20, {"last_below": 8 << 20, "first_above": 16 << 20})
    assert ok and "8.0 MiB and 16.0 MiB" in why and "4.0x" in why
    assert not B.beyond_cache((128 << 20) - 1, 32 << 20, {"last_below": 1, "first_above": 2})[0]
    with pytest.raises(ValueError, match="llc"):
        B.beyond_cache(1 << 30, 0, {"last_below": 1, "first_above": 2})


def test_speedup_withheld_when_the_cache_sweep_was_loaded():
    r = fake_results()
    r["cliff_bench"] = fake_bench({"x": {"ns": [1.0, 1.0]}}, LOADED_I)
    m = B.measure(r)["traversal-speedup"]
    assert m.estimate is None and "cache sweep: machine loaded" in m.note


def test_eviction_arguments_and_cold_walks_keep_results():
    from effdl_lib._allocator import layout_walk
    warm = B.run_workload("bitmap", "W1", 1 << 10, seed=3, return_addresses=True)
    cold = B.run_workload("bitmap", "W1", 1 << 10, seed=3, return_addresses=True,
                          evict_bytes=1 << 20)
    assert np.array_equal(warm["addresses"] - warm["arena_base"],
                          cold["addresses"] - cold["arena_base"])   # eviction changes no layout
    assert len(cold["traversal_ns"]) == 3 and np.isfinite(cold["traversal_ns"]).all()
    f = B.floor_walk(1 << 10, repeats=2, evict_bytes=1 << 20)
    assert len(f["list_ns"]) == len(f["scan_ns"]) == 2
    for bad in (-1, 1.5, True, 1 << 40):
        with pytest.raises(ValueError, match="evict_bytes"):
            B.run_workload("bitmap", "W1", 1 << 8, evict_bytes=bad)
        with pytest.raises(ValueError, match="evict_bytes"):
            layout_walk(100, True, 0, 1, False, bad)
    assert B.default_evict_bytes(4) == 4 * B.llc_bytes()
    assert B.gb_per_s(2.0) == 16.0 and np.isnan(B.gb_per_s(0.0))


def test_headline_figures_by_hand():
    import pandas as pd
    r = fake_results()
    r["loc"] = r["loc"].assign(**{k: 1.0 for k in B.LOCALITY_KEYS if k not in ("same_page", "forward")},
                               fresh_fraction=0.0)
    r["cliff_bench"] = fake_bench({"x": {"ns": [1.0]}})
    h = B.headline(r)
    assert h["bitmap_over_floor_min"] == pytest.approx(5.0 / 2.4)
    assert h["malloc_over_bitmap_min"] == pytest.approx(100.0 / 5.0)
    assert h["floor_gbs"] == pytest.approx(32 / 2.4) and h["target_over_llc"] == 4.0
    assert h["churn_bitmap_over_lifo_target"] == pytest.approx(25.0 / 110.0)
    assert h["af_bitmap_over_lifo_target"] == 1.0
    assert h["cliff_hi_mib"] == 8.0 and h["best_real"]["W1"] == "jemalloc"
    assert h["w4_bitmap_entries_last"] == pytest.approx(3.1)
    assert h["quiet_sections"] == h["sections"]
    assert h["jemalloc_layout"] == ("on W1, page entries per page: jemalloc 2.50 (40% same page), "
                                    "bitmap 2.00 (98% same page), glibc 30.00 (50% same page)")


def test_locality_over_seeds_and_drift_are_deterministic_for_pools():
    a = B.locality_over_seeds(["bitmap", "lifo"], 1 << 10, seeds=2)
    b = B.locality_over_seeds(["bitmap", "lifo"], 1 << 10, seeds=2)
    cols = ["same_line", "same_page", "forward", "pages_per_1000"]
    assert a[cols].equals(b[cols])
    d = B.drift(["bitmap"], 1 << 10, rounds=2, seeds=1, repeats=1)
    assert list(d["round"]) == [1, 2] and (d["same_page"] > 0.9).all()


def test_round_and_repeat_limits_guard_the_buffer():
    with pytest.raises(ValueError, match="repeats must be <= 1000"):
        B.run_workload("bitmap", "W4", n=2, rounds=65536, repeats=65537)


def test_drift_change_first_to_last():
    import pandas as pd
    dr = pd.DataFrame({"allocator": ["a"] * 3, "seed": [0] * 3, "round": [1, 2, 3],
                       "same_page": [0.9, 0.5, 0.3], "traversal_ns": [2.0, 3.0, 8.0]})
    assert B.drift_change(dr, "same_page")[("a", 0)] == pytest.approx(-0.6)
    assert B.drift_change(dr, "traversal_ns", ratio=True)[("a", 0)] == pytest.approx(4.0)
