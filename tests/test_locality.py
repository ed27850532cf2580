import numpy as np
import pytest

from effdl_lib._locality import locality_metrics


def test_sequential_32_byte_nodes():
    m = locality_metrics(np.arange(0, 32 * 256, 32, dtype=np.uint64))
    assert m["forward"] == 1.0
    assert m["same_line"] == pytest.approx(128 / 255)  # every other step stays on a line
    assert m["same_page"] == pytest.approx(254 / 255)  # one page boundary at 4096
    assert m["pages_per_window"] == 2.0
    assert m["ascending_runs"] == 1
    assert m["page_entries_per_page"] == 1.0 and m["line_entries_per_line"] == 1.0


def test_reverse_and_scattered():
    rev = locality_metrics(np.arange(10, dtype=np.uint64)[::-1] * 4096)
    assert rev["forward"] == 0.0 and rev["same_page"] == 0.0
    assert rev["pages_per_window"] == 10.0


def test_rejects_too_few():
    with pytest.raises(ValueError):
        locality_metrics(np.array([1], dtype=np.uint64))


def test_interleaved_passes_are_seen():
    """Two ascending passes over the same 4,096 slots (even slots, then odd): every step
    forward but one, every page entered twice; a third of three passes: three times."""
    x = np.arange(0, 32 * 4096, 32, dtype=np.uint64)
    two = locality_metrics(np.concatenate([x[::2], x[1::2]]))
    assert two["ascending_runs"] == 2 and two["forward"] == pytest.approx(4094 / 4095)
    assert two["page_entries_per_page"] == 2.0 and two["line_entries_per_line"] == 2.0
    three = locality_metrics(np.concatenate([x[::3], x[1::3], x[2::3]]))
    assert three["ascending_runs"] == 3 and three["page_entries_per_page"] == 3.0


def test_pages_per_window_matches_numpy():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 1 << 24, 5000, dtype=np.uint64)
    m = locality_metrics(a, window=1000)
    pages = a // 4096
    want = np.mean([len(np.unique(pages[s:s + 1000])) for s in range(0, 5000 - 1000 + 1, 1000)])
    assert m["pages_per_window"] == want
    entries = 1 + np.count_nonzero(pages[1:] != pages[:-1])
    assert m["page_entries_per_page"] == pytest.approx(entries / len(np.unique(pages)))
    assert m["ascending_runs"] == 1 + np.count_nonzero(a[1:] <= a[:-1])


def test_rejects_bad_units():
    with pytest.raises(ValueError):
        locality_metrics(np.arange(4, dtype=np.uint64), line=0)
    with pytest.raises(ValueError):
        locality_metrics(np.arange(4, dtype=np.uint64), window=0)
