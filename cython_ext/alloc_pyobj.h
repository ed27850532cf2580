/* C layout of effdl_lib._allocator pool objects, so other Cython modules can reach the
 * ap_pool behind a Python pool without Python calls (see allocator.pxd).  Must match the
 * attribute order of cdef class _Pool in allocator.pyx (no cdef methods: no vtable). */
#ifndef ALLOC_PYOBJ_H
#define ALLOC_PYOBJ_H
#include <Python.h>
#include "alloc_pool.h"

typedef struct {
    PyObject_HEAD
    ap_pool *pool;
    PyObject *live;  /* set of live addresses, or None where the C pool can check */
    PyObject *freed; /* SystemAllocator: addresses freed and not handed out again */
} ap_PoolObject;

#endif /* ALLOC_PYOBJ_H */
