# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Deterministic locality of a traversal: given node addresses in visiting order, how
often the next node sits on the same cache line or page, and how often the step goes
forward in memory. Timings are noisy on shared machines; these fractions are not."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint64_t

cnp.import_array()


def locality_metrics(addresses, unsigned int line=64, unsigned int page=4096,
                     Py_ssize_t window=1000):
    """Return same_line, same_page, forward (fractions of successor steps) and
    pages_per_window (mean distinct pages per ``window`` consecutive nodes)."""
    cdef cnp.ndarray[uint64_t, ndim=1] a = np.ascontiguousarray(addresses, dtype=np.uint64)
    cdef Py_ssize_t n = a.shape[0], i
    if n < 2:
        raise ValueError("need at least two addresses to measure successor steps")
    if line == 0 or page == 0 or window <= 0:
        raise ValueError("line, page and window must be positive")
    cdef Py_ssize_t same_line = 0, same_page = 0, forward = 0
    with nogil:
        for i in range(n - 1):
            if a[i] // line == a[i + 1] // line:
                same_line += 1
            if a[i] // page == a[i + 1] // page:
                same_page += 1
            if a[i + 1] > a[i]:
                forward += 1
    pages = a // page
    w = min(window, n)
    distinct = [len(np.unique(pages[s:s + w])) for s in range(0, n - w + 1, w)]
    steps = float(n - 1)
    return {"same_line": same_line / steps, "same_page": same_page / steps,
            "forward": forward / steps, "pages_per_window": float(np.mean(distinct))}
