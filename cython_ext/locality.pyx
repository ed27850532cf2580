# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Deterministic locality of a traversal: given node addresses in visiting order, how
often the next node sits on the same cache line or page, how often the step goes forward
in memory, and how fragmented the visit is: into how many ascending runs it splits and
how often it comes back to a page (or line) it had already left.  Timings are noisy on
shared machines; these numbers are not."""
import numpy as np
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free, qsort


cdef int _cmp_u64(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const uint64_t*>a)[0], y = (<const uint64_t*>b)[0]
    return (x > y) - (x < y)


cdef Py_ssize_t _distinct(uint64_t* buf, Py_ssize_t m) noexcept nogil:
    """Distinct values of buf[0..m) (sorts buf in place)."""
    cdef Py_ssize_t i, d = 0
    if m == 0:
        return 0
    qsort(buf, m, sizeof(uint64_t), _cmp_u64)
    d = 1
    for i in range(1, m):
        if buf[i] != buf[i - 1]:
            d += 1
    return d


cdef Py_ssize_t _entries(const uint64_t[::1] a, Py_ssize_t n, uint64_t unit) noexcept nogil:
    """Times the walk enters a unit (line or page): 1 + steps that change unit."""
    cdef Py_ssize_t i, e = 1
    for i in range(n - 1):
        if a[i] // unit != a[i + 1] // unit:
            e += 1
    return e


def locality_metrics(addresses, unsigned int line=64, unsigned int page=4096,
                     Py_ssize_t window=1000):
    """Locality of a traversal order (addresses in visiting order).

    same_line, same_page, forward: fractions of successor steps.
    pages_per_window: mean distinct pages per ``window`` consecutive nodes (complete
    windows; one window of all nodes when there are fewer).
    ascending_runs: maximal runs of increasing addresses (1 + backward steps).
    page_entries_per_page, line_entries_per_line: times the walk enters a page (line)
    over the distinct pages (lines) it visits: 1.0 when every page is visited in one go,
    k when the walk sweeps the same pages k times (a merge of k ascending runs)."""
    a_arr = np.ascontiguousarray(addresses, dtype=np.uint64)
    cdef const uint64_t[::1] a = a_arr
    cdef Py_ssize_t n = a.shape[0], i, s, w
    if n < 2:
        raise ValueError("need at least two addresses to measure successor steps")
    if line == 0 or page == 0 or window <= 0:
        raise ValueError("line, page and window must be positive")
    cdef Py_ssize_t same_line = 0, same_page = 0, forward = 0, n_windows = 0
    cdef Py_ssize_t distinct_sum = 0, pages, lines, page_entries, line_entries
    cdef uint64_t* buf = <uint64_t*>malloc(n * sizeof(uint64_t))
    if buf is NULL:
        raise MemoryError(f"no memory for {n} addresses")
    try:
        with nogil:
            for i in range(n - 1):
                if a[i] // line == a[i + 1] // line:
                    same_line += 1
                if a[i] // page == a[i + 1] // page:
                    same_page += 1
                if a[i + 1] > a[i]:
                    forward += 1
            w = window if window < n else n
            s = 0
            while s + w <= n:
                for i in range(w):
                    buf[i] = a[s + i] // page
                distinct_sum += _distinct(buf, w)
                n_windows += 1
                s += w
            for i in range(n):
                buf[i] = a[i] // page
            pages = _distinct(buf, n)
            for i in range(n):
                buf[i] = a[i] // line
            lines = _distinct(buf, n)
            page_entries = _entries(a, n, page)
            line_entries = _entries(a, n, line)
    finally:
        free(buf)
    steps = float(n - 1)
    return {"same_line": same_line / steps, "same_page": same_page / steps,
            "forward": forward / steps,
            "pages_per_window": <double>distinct_sum / <double>n_windows,
            "ascending_runs": int(n - 1 - forward + 1),
            "page_entries_per_page": <double>page_entries / <double>pages,
            "line_entries_per_line": <double>line_entries / <double>lines}
