import numpy as np
import pytest

from effdl_lib._locality import locality_metrics


def test_sequential_32_byte_nodes():
    m = locality_metrics(np.arange(0, 32 * 256, 32, dtype=np.uint64))
    assert m["forward"] == 1.0
    assert m["same_line"] == pytest.approx(128 / 255)  # every other step stays on a line
    assert m["same_page"] == pytest.approx(254 / 255)  # one page boundary at 4096
    assert m["pages_per_window"] == 2.0


def test_reverse_and_scattered():
    rev = locality_metrics(np.arange(10, dtype=np.uint64)[::-1] * 4096)
    assert rev["forward"] == 0.0 and rev["same_page"] == 0.0
    assert rev["pages_per_window"] == 10.0


def test_rejects_too_few():
    with pytest.raises(ValueError):
        locality_metrics(np.array([1], dtype=np.uint64))
