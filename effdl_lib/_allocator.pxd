# cython: language_level=3
"""Cython interface of effdl_lib._allocator (Fast Bitmap Fit and baseline pools).

Like numpy.random's ``_bit_generator.pxd``, this file sits beside the extension module
it describes, so Cython generates the pool objects' layout for every module that
cimports it (no hand-copied struct).  Compile with ``include_dirs`` containing
``cython_ext`` (for the C headers) and the repository root on the include path:

    from effdl_lib._allocator cimport ap_alloc, ap_free, BitmapPool
    cdef BitmapPool pool = BitmapPool(obj_size=32)   # created from Python
    cdef void* p
    with nogil:
        p = ap_alloc(pool.pool, NULL)                # lowest free address
        ap_free(pool.pool, p)

or own an ``ap_pool`` outright (ap_init / ap_destroy) in C code.  The C calls do not
update a Python pool's live-set bookkeeping: mix the two APIs only on BitmapPool (whose
checks live in the bitmap itself) or not at all."""
from libc.stdint cimport uint64_t

cdef extern from "alloc_pool.h" nogil:
    enum:
        AP_SYSTEM, AP_LIFO, AP_BITMAP, AP_ORDERED
        AP_OK, AP_FOREIGN, AP_DOUBLE_FREE, AP_NOMEM, AP_EINVAL
        AP_MAX_CHUNKS

    ctypedef struct ap_chunk:
        size_t first
        size_t n
        uint64_t* bits
        int top

    ctypedef struct ap_pool:
        int kind
        size_t stride
        size_t max_slots
        size_t n_used
        size_t meta_bytes
        char* base
        size_t reserve_bytes
        size_t committed_bytes
        size_t n_slots
        size_t initial_slots
        int n_chunks
        ap_chunk chunks[64]
        uint64_t chunk_free_mask

    int ap_init(ap_pool* p, int kind, size_t obj_size, size_t capacity,
                size_t initial_slots, size_t reserve_bytes)
    void ap_destroy(ap_pool* p)
    # NULL when the capacity or memory is exhausted; hint is used by AP_BITMAP only
    void* ap_alloc(ap_pool* p, const void* hint)
    # AP_OK; bitmap pools also report AP_FOREIGN / AP_DOUBLE_FREE
    int ap_free(ap_pool* p, void* ptr)
    int ap_owns(const ap_pool* p, const void* ptr)
    int ap_bitmap_is_free(const ap_pool* p, size_t slot)
    # kind-specific entry points, for loops that know their kind
    void* ap_bitmap_alloc(ap_pool* p)
    void* ap_bitmap_alloc_near(ap_pool* p, const void* hint)
    int ap_bitmap_free(ap_pool* p, void* ptr)
    void* ap_list_alloc(ap_pool* p)
    int ap_lifo_free(ap_pool* p, void* ptr)
    int ap_ordered_free(ap_pool* p, void* ptr)

cdef extern from "alloc_workloads.h" nogil:
    ctypedef struct wl_params:
        int workload
        size_t n
        double frac
        int rounds
        int repeats
        size_t n_ops
        uint64_t seed
        int use_hint
        size_t evict_bytes

    ctypedef struct wl_result:
        double* trav_ns
        uint64_t* addrs
        size_t addr_cap
        uint64_t* round_addrs
        size_t n_nodes
        double build_ns
        double alloc_ns
        double free_ns
        double churn_ns
        size_t usable_bytes
        int status

    int wl_run(ap_pool* p, const wl_params* q, wl_result* r)

    # physical floor / cache probe: ordered or random list over one contiguous array
    int wl_layout_walk(size_t n, int ordered, uint64_t seed, int repeats,
                       double* list_ns, double* scan_ns, size_t evict_bytes)


# Extension types of effdl_lib._allocator.  ``pool`` is the C pool (NULL before
# __init__); ``live`` / ``freed`` are the Python-side checks of the list pools and the
# system allocator (None where the C pool checks for itself).
cdef class _Pool:
    cdef ap_pool* pool
    cdef object live
    cdef object freed

cdef class SystemAllocator(_Pool):
    pass

cdef class LifoPool(_Pool):
    pass

cdef class OrderedFreeListPool(_Pool):
    pass

cdef class BitmapPool(_Pool):
    pass
