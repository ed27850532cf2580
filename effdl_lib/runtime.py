"""Seeds, thread count and device in one call, so every run records the same facts."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Runtime:
    seed: int
    threads: int
    device: torch.device
    quiet: bool

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)


def default_threads() -> int:
    # One thread unless asked: processes often run side by side here (xdist, Dask),
    # where two threads each were measured 30-40x slower than one.
    return int(os.environ.get("EFFDL_THREADS", "1"))


def is_quiet() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("EFFDL_QUIET", "") not in ("", "0")


def setup(seed: int = 0, threads: int | None = None, want_gpu: bool = False,
          quiet: bool | None = None) -> Runtime:
    """Seed python/numpy/torch, fix the torch thread count, pick the device."""
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    set_seed(seed)
    device = torch.device("cuda" if want_gpu and torch.cuda.is_available() else "cpu")
    return Runtime(seed, threads, device, is_quiet() if quiet is None else quiet)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
