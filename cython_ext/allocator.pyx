# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fixed-size object pools (Fast Bitmap Fit and baselines) and timed linked-structure
workloads; the C lives in alloc_pool.h and alloc_workloads.h.  The extension types and C
declarations are in effdl_lib/_allocator.pxd (Cython picks it up as this module's own
.pxd, and other Cython modules cimport it).

Python API safety: misuse raises and never corrupts.  BitmapPool checks in C from its
bitmap; LifoPool / OrderedFreeListPool keep a Python set of live addresses (their C free
lists trust the caller, as real pools do); SystemAllocator keeps live and freed sets.
Bad arguments raise ValueError, MemoryError only means memory.  The workloads
(run_workload) use the unchecked C paths with no Python in the loops."""
import numpy as np
from libc.stdint cimport uint64_t, uintptr_t
from libc.stdlib cimport calloc, free as c_free


class PoolError(Exception):
    """Base class of allocator misuse errors."""


class DoubleFreeError(PoolError, ValueError):
    """Freeing a slot of this pool that is not currently allocated."""


class ForeignPointerError(PoolError, ValueError):
    """An address this pool does not own (outside it, or not the start of a slot)."""


class PoolExhausted(PoolError, MemoryError):
    """The pool's capacity (or memory) is exhausted."""


KIND_NAMES = {AP_SYSTEM: "system", AP_LIFO: "lifo", AP_BITMAP: "bitmap",
              AP_ORDERED: "ordered_list"}
# workload allocator name -> (pool kind, pass hints)
ALLOCATOR_KINDS = {"malloc": (AP_SYSTEM, 0), "lifo": (AP_LIFO, 0),
                   "bitmap": (AP_BITMAP, 0), "bitmap_hint": (AP_BITMAP, 1),
                   "ordered_list": (AP_ORDERED, 0)}
WORKLOADS = {"W1": 1, "W2": 2, "W3": 3, "W4": 4}
NODE_BYTES = 32
MAX_OBJ_SIZE = 1 << 16
_MAX_ADDR = (1 << 64) - 1


cdef inline uintptr_t _addr(object addr) except? 0:
    if not isinstance(addr, int) or isinstance(addr, bool):
        raise TypeError(f"address must be an int, not {type(addr).__name__}")
    if addr < 0 or addr > _MAX_ADDR:
        raise ForeignPointerError(f"{addr!r} is not an address")
    return <uintptr_t>addr


cdef class _Pool:
    """Common interface; construct one of the subclasses.  Attributes (pool, live,
    freed) are declared in _allocator.pxd."""

    def __cinit__(self, *args, **kwargs):
        self.pool = NULL

    def __dealloc__(self):
        if self.pool is NULL:
            return
        if self.pool.kind == AP_SYSTEM and self.live:
            for a in self.live:
                ap_free(self.pool, <void*><uintptr_t>a)
        ap_destroy(self.pool)
        c_free(self.pool)
        self.pool = NULL

    def alloc(self, hint=None):
        """Address (int) of a fresh slot.  hint: an address of this pool; BitmapPool
        returns the lowest free slot at or above it in its chunk, else lowest-first.
        The other pools ignore hints (SystemAllocator does not even check them)."""
        cdef ap_pool* p = _checked(self)
        cdef const void* h = NULL
        if hint is not None and p.kind != AP_SYSTEM:
            h = <const void*>_addr(hint)
            if not ap_owns(p, h):
                raise ForeignPointerError(f"hint {hint:#x} is not a slot of this pool")
        cdef void* r = ap_alloc(p, h)
        if r is NULL:
            raise PoolExhausted(
                f"{type(self).__name__} exhausted: {p.n_used} objects live, "
                f"capacity {p.max_slots if p.max_slots else 'unbounded'}")
        addr = <uintptr_t>r
        if self.live is not None:
            self.live.add(addr)
        if self.freed is not None:
            self.freed.discard(addr)
        return addr

    def free(self, addr):
        """Return a slot.  Raises DoubleFreeError or ForeignPointerError on misuse."""
        cdef ap_pool* p = _checked(self)
        cdef uintptr_t a = _addr(addr)
        cdef int rc
        if p.kind == AP_BITMAP:
            rc = ap_free(p, <void*>a)
            if rc == AP_FOREIGN:
                raise ForeignPointerError(f"{addr:#x} is not the start of a slot of this pool")
            if rc == AP_DOUBLE_FREE:
                raise DoubleFreeError(f"slot {addr:#x} is not allocated (double free?)")
            return
        if p.kind == AP_SYSTEM:
            if addr in self.live:
                self.live.remove(addr)
                ap_free(p, <void*>a)
                self.freed.add(addr)
            elif addr in self.freed:
                raise DoubleFreeError(f"{addr:#x} was already freed")
            else:
                raise ForeignPointerError(f"{addr:#x} was not allocated here")
            return
        if not ap_owns(p, <void*>a):
            raise ForeignPointerError(f"{addr:#x} is not the start of a slot of this pool")
        if addr not in self.live:
            raise DoubleFreeError(f"slot {addr:#x} is not allocated (double free?)")
        self.live.remove(addr)
        ap_free(p, <void*>a)

    def owns(self, addr):
        """Pools: addr is the start of a committed slot (allocated or free).
        SystemAllocator: addr is live (freed memory belongs to malloc again)."""
        cdef ap_pool* p = _checked(self)
        if not isinstance(addr, int) or addr < 0 or addr > _MAX_ADDR:
            return False
        if p.kind == AP_SYSTEM:
            return addr in self.live
        return bool(ap_owns(p, <void*><uintptr_t>addr))

    @property
    def kind(self):
        return KIND_NAMES[_checked(self).kind]

    @property
    def obj_size(self):
        return _checked(self).stride

    @property
    def capacity(self):
        """Max live objects: the capacity given, else (pools) what the reserved address
        range holds; None for a SystemAllocator without a capacity."""
        cdef ap_pool* p = _checked(self)
        return p.max_slots if p.max_slots else None

    @property
    def n_used(self):
        return _checked(self).n_used

    @property
    def n_slots(self):
        """Committed slots (SystemAllocator: live objects)."""
        cdef ap_pool* p = _checked(self)
        return p.n_used if p.kind == AP_SYSTEM else p.n_slots

    @property
    def n_free(self):
        cdef ap_pool* p = _checked(self)
        return 0 if p.kind == AP_SYSTEM else p.n_slots - p.n_used

    @property
    def metadata_bytes(self):
        return _checked(self).meta_bytes

    @property
    def base(self):
        """Address of slot 0 (None for SystemAllocator)."""
        cdef ap_pool* p = _checked(self)
        return None if p.kind == AP_SYSTEM else <uintptr_t>p.base

    def chunk_bounds(self):
        """[(first slot address, n slots)] per chunk in address order."""
        cdef ap_pool* p = _checked(self)
        cdef int c
        if p.kind == AP_SYSTEM:
            return []
        return [(<uintptr_t>(p.base + p.chunks[c].first * p.stride), p.chunks[c].n)
                for c in range(p.n_chunks)]

    def __repr__(self):
        if self.pool is NULL:
            return f"<{type(self).__name__} (uninitialised)>"
        return (f"<{type(self).__name__} obj_size={self.obj_size} used={self.n_used} "
                f"slots={self.n_slots}>")


cdef ap_pool* _checked(_Pool self) except NULL:
    if self.pool is NULL:
        raise RuntimeError(f"{type(self).__name__} is not initialised")
    return self.pool


cdef _setup(_Pool self, int kind, object obj_size, object capacity, object initial_slots,
            object reserve_bytes):
    if self.pool is not NULL:
        raise RuntimeError("pool already initialised")
    if (not isinstance(obj_size, int) or obj_size < 1 or obj_size > MAX_OBJ_SIZE
            or (kind != AP_SYSTEM and (obj_size < 8 or obj_size % 8))):
        raise ValueError(f"obj_size must be a positive multiple of 8 up to {MAX_OBJ_SIZE} "
                         f"(got {obj_size!r})")
    if capacity is not None and capacity < 1:
        raise ValueError(f"capacity must be positive or None (got {capacity})")
    _check_initial_slots(initial_slots)
    cdef ap_pool* p = <ap_pool*>calloc(1, sizeof(ap_pool))
    if p is NULL:
        raise MemoryError()
    rc = ap_init(p, kind, obj_size, capacity or 0, initial_slots, reserve_bytes or 0)
    if rc != AP_OK:
        c_free(p)
        if rc == AP_EINVAL:
            raise ValueError("invalid pool parameters")
        raise MemoryError("could not reserve address space for the pool")
    self.pool = p
    self.live = set() if kind != AP_BITMAP else None
    self.freed = set() if kind == AP_SYSTEM else None


cdef class SystemAllocator(_Pool):
    """malloc/free (the process's allocator, glibc unless LD_PRELOADed), the baseline.
    capacity bounds live objects so exhaustion is testable; hints are ignored."""
    def __init__(self, obj_size=32, capacity=None):
        _setup(self, AP_SYSTEM, obj_size, capacity, 1, None)


cdef class LifoPool(_Pool):
    """Pool with an intrusive LIFO free list (what thread caches do): the last freed slot
    is handed out first.  Hints are ignored."""
    def __init__(self, obj_size=32, capacity=None, initial_slots=64, reserve_bytes=None):
        _setup(self, AP_LIFO, obj_size, capacity, initial_slots, reserve_bytes)


cdef class OrderedFreeListPool(_Pool):
    """Pool with an address-ordered free list (Boost ordered_free): lowest-first like
    BitmapPool, but O(free slots) per free.  Hints are ignored."""
    def __init__(self, obj_size=32, capacity=None, initial_slots=64, reserve_bytes=None):
        _setup(self, AP_ORDERED, obj_size, capacity, initial_slots, reserve_bytes)


cdef class BitmapPool(_Pool):
    """Fast Bitmap Fit: per-chunk 64-ary bit trees (ctz at every level), metadata apart
    from the objects.  alloc() returns the lowest free address of the whole pool
    (chunks are adjacent, in address order); alloc(hint=a) the lowest free slot >= a in
    a's chunk, falling back to lowest-first.  Chunks hold initial_slots * 2^c slots."""
    def __init__(self, obj_size=32, capacity=None, initial_slots=64, reserve_bytes=None):
        _setup(self, AP_BITMAP, obj_size, capacity, initial_slots, reserve_bytes)

    def free_addresses(self):
        """Sorted addresses of free committed slots, read from the leaf bits."""
        cdef ap_pool* p = _checked(self)
        cdef size_t s
        return [<uintptr_t>(p.base + s * p.stride) for s in range(p.n_slots)
                if ap_bitmap_is_free(p, s) == 1]

    def slot_is_free(self, Py_ssize_t slot):
        """Whether committed slot ``slot`` (an index from 0) is free; IndexError outside
        the committed slots (the C check returns -1 there instead of reading past the
        chunk table)."""
        cdef ap_pool* p = _checked(self)
        cdef int rc = ap_bitmap_is_free(p, <size_t>slot) if slot >= 0 else -1
        if rc < 0:
            raise IndexError(f"slot {slot} is not a committed slot (0..{p.n_slots - 1})")
        return bool(rc)


MAX_INITIAL_SLOTS = 1 << 30


def _check_initial_slots(initial_slots):
    if (not isinstance(initial_slots, int) or isinstance(initial_slots, bool)
            or initial_slots < 1 or initial_slots > MAX_INITIAL_SLOTS
            or initial_slots & (initial_slots - 1)):
        raise ValueError(f"initial_slots must be a power of two in [1, 2^30], "
                         f"got {initial_slots!r}")


def run_workload(str allocator, str workload="W1", Py_ssize_t n=1 << 16,
                 Py_ssize_t obj_size=32, uint64_t seed=0, double frac=0.5,
                 int repeats=5, int rounds=10, n_ops=None, initial_slots=64,
                 bint round_addresses=False, evict_bytes=0):
    """Run one workload with all loops in C (GIL released) and return a dict.

    allocator: malloc | lifo | bitmap | bitmap_hint | ordered_list.  workload: W1-W4
    (rounds applies to W4; n_ops, default n, to W2/W3).  obj_size is the request size
    (malloc) or pool stride; nodes are 32 bytes.  Times are ns per node (traversal) or
    per operation; "addresses" is the final structure in traversal order (uint64).
    evict_bytes > 0: before every timed traversal the caches are evicted by touching a
    private buffer of that many bytes (pass a multiple of the last-level cache), so each
    walk is served from memory.  Bad arguments raise ValueError; MemoryError only when
    memory runs out."""
    _check_evict(evict_bytes)
    if allocator not in ALLOCATOR_KINDS:
        raise ValueError(f"allocator must be one of {sorted(ALLOCATOR_KINDS)}")
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {sorted(WORKLOADS)}")
    if n < 2:
        raise ValueError("n must be at least 2")
    if obj_size < NODE_BYTES or obj_size % 8 or obj_size > MAX_OBJ_SIZE:
        raise ValueError(f"obj_size must be a multiple of 8 in [{NODE_BYTES}, "
                         f"{MAX_OBJ_SIZE}], got {obj_size}")
    _check_initial_slots(initial_slots)
    if not 0.0 <= frac <= 1.0:
        raise ValueError("frac must be in [0, 1]")
    if repeats < 1 or rounds < 1:
        raise ValueError("repeats and rounds must be positive")
    if repeats > 1000 or rounds > 10000:
        # rounds * repeats sizes a C buffer: keep the product far from int overflow
        raise ValueError("repeats must be <= 1000 and rounds <= 10000")
    kind, use_hint = ALLOCATOR_KINDS[allocator]
    cdef int w = WORKLOADS[workload]
    cdef int n_rounds = rounds if w == 4 else 1
    cdef Py_ssize_t ops = (n if n_ops is None else n_ops) if w in (2, 3) else 0
    if ops < 0:
        raise ValueError("n_ops must be non-negative")

    cdef wl_params q
    q.workload = w
    q.n = n
    q.frac = frac
    q.rounds = n_rounds
    q.repeats = repeats
    q.n_ops = ops
    q.seed = seed
    q.use_hint = use_hint
    q.evict_bytes = <size_t>evict_bytes

    trav_arr = np.full(<Py_ssize_t>n_rounds * <Py_ssize_t>repeats, np.nan)
    cdef double[::1] trav = trav_arr
    cdef Py_ssize_t cap = n + ops if w == 2 else n
    addrs_arr = np.zeros(cap, dtype=np.uint64)
    cdef uint64_t[::1] addrs = addrs_arr
    cdef uint64_t[::1] raddrs
    raddrs_arr = None
    cdef wl_result r
    r.trav_ns = &trav[0]
    r.addrs = &addrs[0]
    r.addr_cap = cap
    r.round_addrs = NULL
    if round_addresses and w == 4:
        raddrs_arr = np.zeros(n_rounds * n, dtype=np.uint64)
        raddrs = raddrs_arr
        r.round_addrs = &raddrs[0]

    cdef ap_pool pool
    cdef int rc = ap_init(&pool, kind, obj_size, 0, initial_slots, 0)
    if rc == AP_EINVAL:
        raise ValueError(f"invalid pool parameters (obj_size={obj_size}, "
                         f"initial_slots={initial_slots})")
    if rc != AP_OK:
        raise MemoryError("could not reserve address space for the pool")
    cdef int st
    try:
        with nogil:
            st = wl_run(&pool, &q, &r)
        if st != AP_OK:
            raise PoolExhausted(f"workload {workload} ran out of memory")
        if kind == AP_SYSTEM:
            slots, nbytes, base, meta = r.n_nodes, r.usable_bytes, None, 0
        else:
            slots, meta, base = pool.n_slots, pool.meta_bytes, <uintptr_t>pool.base
            nbytes = pool.n_slots * pool.stride + meta
    finally:
        ap_destroy(&pool)

    final = addrs_arr[:r.n_nodes].copy()
    by_round = trav_arr.reshape(n_rounds, repeats)
    out = {
        "allocator": allocator, "workload": workload, "n": n, "obj_size": obj_size,
        "seed": seed, "frac": frac, "rounds": n_rounds, "repeats": repeats, "n_ops": ops,
        "initial_slots": initial_slots,
        "n_nodes": int(r.n_nodes),
        "traversal_ns": by_round[n_rounds - 1].tolist(),
        "traversal_ns_rounds": by_round.tolist(),
        "build_ns": r.build_ns, "alloc_ns": r.alloc_ns, "free_ns": r.free_ns,
        "churn_ns": r.churn_ns,
        "footprint_slots": int(slots), "footprint_bytes": int(nbytes),
        "metadata_bytes": int(meta),
        "pages_touched": int(np.unique(final >> np.uint64(12)).size),
        "span_bytes": int(final.max() - final.min() + np.uint64(obj_size)) if final.size else 0,
        "arena_base": base,
        "addresses": final,
    }
    if raddrs_arr is not None:
        out["round_addresses"] = [raddrs_arr[i * n:(i + 1) * n].copy() for i in range(n_rounds)]
    return out


#: largest eviction buffer accepted (64 GiB): far above any cache, far below a typo
MAX_EVICT_BYTES = 1 << 36


def _check_evict(evict_bytes):
    if (isinstance(evict_bytes, bool) or not isinstance(evict_bytes, (int, np.integer))
            or evict_bytes < 0 or evict_bytes > MAX_EVICT_BYTES):
        raise ValueError(f"evict_bytes must be an int in [0, 2^36], got {evict_bytes!r}")


def layout_walk(Py_ssize_t n, bint ordered=True, uint64_t seed=0, int repeats=5,
                bint scan=True, evict_bytes=0):
    """Walk n 32-byte nodes of one contiguous array, linked in address order (ordered:
    the physical floor of a list walk) or in a random order (the cache probe).  Returns
    {"list_ns": [ns/node per repeat], "scan_ns": [ns/node of an array scan of the same
    nodes] (empty when scan is False), "n", "ordered", "bytes"}.  evict_bytes > 0:
    the caches are evicted before every timed walk and scan (as in run_workload)."""
    _check_evict(evict_bytes)
    if n < 2 or n > (1 << 32):
        raise ValueError(f"n must lie in [2, 2^32], got {n}")
    if repeats < 1 or repeats > 1000:
        raise ValueError(f"repeats must lie in [1, 1000], got {repeats}")
    list_arr = np.full(repeats, np.nan)
    scan_arr = np.full(repeats, np.nan)
    cdef double[::1] lv = list_arr
    cdef double[::1] sv = scan_arr
    cdef double* sp = &sv[0] if scan else NULL
    cdef int rc
    cdef size_t ev = <size_t>evict_bytes
    with nogil:
        rc = wl_layout_walk(<size_t>n, ordered, seed, repeats, &lv[0], sp, ev)
    if rc == AP_NOMEM:
        raise MemoryError(f"could not allocate {n} nodes")
    if rc != AP_OK:
        raise ValueError("invalid layout_walk arguments")
    return {"list_ns": list_arr.tolist(), "scan_ns": scan_arr.tolist() if scan else [],
            "n": n, "ordered": bool(ordered), "bytes": n * NODE_BYTES}
