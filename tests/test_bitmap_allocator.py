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
    assert (REPO / "cython_ext" / "allocator.pxd").exists()


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


@pytest.mark.parametrize("kwargs", [dict(obj_size=12), dict(obj_size=0),
                                    dict(initial_slots=3), dict(capacity=0)])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        BitmapPool(**kwargs)


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


def test_compare_allocators_small():
    med = B.compare_allocators(["lifo", "bitmap", "ordered_list"], "W1", n=1 << 10,
                               repeats=2, ordered_list_max_n=1 << 9)
    assert list(med.index) == ["lifo", "bitmap"]
    assert med.attrs["skipped"] == ["ordered_list"]
    assert med.loc["bitmap", "forward"] > med.loc["lifo", "forward"]
    assert "thp" in med.attrs["state_before"]


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
    """Another Cython module reaches a BitmapPool's C pool through allocator.pxd."""
    (tmp_path / "consumer.pyx").write_text(textwrap.dedent("""
        # cython: language_level=3
        from allocator cimport ap_alloc, ap_free, BitmapPool
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
            include_path=[{str(ext)!r}], quiet=True))
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
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("consumer", None)


# ---------------------------------------------------------------- chapter configuration

@pytest.mark.parametrize("overrides, message", [
    ({"target_n": 12345}, "must be one of sizes"),
    ({"sizes": [16]}, "sizes must lie in"),
    ({"obj_sizes": [48]}, "obj_sizes must include 32"),
    ({"repeats": 0}, "repeats must be >= 1"),
    ({"locality_n": 1 << 10}, "locality_n is fixed"),
    ({"preload": False}, "unknown parameter 'preload'"),
])
def test_chapter_config_rejects_bad_values(overrides, message):
    from effdl_lib.config import ConfigError
    with pytest.raises(ConfigError, match=message):
        B.Config.resolve("cpu", overrides)


def test_chapter_profiles_and_claims():
    smoke, cpu = B.Config.resolve("smoke"), B.Config.resolve("cpu")
    assert max(smoke.sizes) <= 1 << 14 and max(cpu.sizes) <= 1 << 21
    assert cpu.target_n >= 1 << 20
    assert B.CLAIMS["paper-speedups"].rule.decide(None) == "not testable at this scale"


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
