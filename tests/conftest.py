import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tests run side by side under xdist
os.environ.setdefault("EFFDL_QUIET", "1")
# xdist already keeps both cores busy: chapters' own sweeps run in process unless a test
# asks for workers explicitly
os.environ.setdefault("EFFDL_WORKERS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _have_data() -> bool:
    from effdl_lib import data
    return (data.data_root() / data.REGISTRY["mnist/test-images"].relpath).exists()


needs_data = pytest.mark.skipif(not _have_data(), reason="MNIST not under EFFDL_DATA")
