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


def thread_cap() -> int | None:
    """``EFFDL_MAX_THREADS``: set by the pipeline when chapters run side by side, so no
    process asks for more threads than its share of the cores."""
    cap = os.environ.get("EFFDL_MAX_THREADS", "")
    return int(cap) if cap.strip() else None


def default_threads() -> int:
    # One thread unless asked: processes often run side by side here (xdist, Dask),
    # where two threads each were measured 30-40x slower than one.
    return int(os.environ.get("EFFDL_THREADS", "1"))


def is_quiet() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("EFFDL_QUIET", "") not in ("", "0")


def pick_device(name: str) -> torch.device:
    """"cpu", "cuda" (an error without a GPU) or "auto" (CUDA when present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no GPU; pass -p device auto to fall "
                           "back to the CPU, or run on a machine with CUDA")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', not {name!r}")
    return torch.device(name)


def setup(seed: int = 0, threads: int | None = None, device: str = "cpu",
          quiet: bool | None = None) -> Runtime:
    """Seed python/numpy/torch, fix the torch thread count, pick the device."""
    threads = threads or default_threads()
    if thread_cap() is not None:
        threads = max(1, min(threads, thread_cap()))
    torch.set_num_threads(threads)
    set_seed(seed)
    return Runtime(seed, threads, pick_device(device), is_quiet() if quiet is None else quiet)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
