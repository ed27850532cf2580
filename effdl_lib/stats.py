"""Small-sample statistics: t-intervals over seeds, paired differences, bootstrap ratios."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci_low: float
    ci_high: float
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}

    def fmt(self, digits: int = 2, scale: float = 1.0) -> str:
        m, lo, hi = (scale * v for v in (self.mean, self.ci_low, self.ci_high))
        if self.n < 2:
            return f"{m:.{digits}f} (n=1, no CI)"
        return f"{m:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean and two-sided Student-t interval; with n=1 the interval is the point."""
    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"mean_ci needs finite values, got {values!r}")
    mean = float(x.mean())
    if x.size < 2:
        return Estimate(mean, mean, mean, 1)
    from scipy import stats as _st  # imported here: allocator subprocesses start faster
    half = float(_st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Estimate(mean, mean - half, mean + half, int(x.size))


def paired_diff(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean of a[i] - b[i] over paired seeds, with its t-interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired arms need equal lengths, got {a.shape} and {b.shape}")
    return mean_ci(a - b, level)


def bootstrap_ratio(num: Sequence[float], den: Sequence[float], level: float = 0.95,
                    n_boot: int = 10_000, paired: bool = True, seed: int = 0) -> Estimate:
    """Ratio of means num/den with a percentile bootstrap interval.

    ``paired`` resamples the same indices for both arms (interleaved repeats)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if (num.size == 0 or den.size == 0 or not (np.all(np.isfinite(num)) and np.all(np.isfinite(den)))
            or np.any(den <= 0) or np.any(num < 0)):
        raise ValueError("bootstrap_ratio needs finite, non-empty, non-negative samples and "
                         "positive denominators")
    rng = np.random.default_rng(seed)
    point = float(num.mean() / den.mean())
    i = rng.integers(0, num.size, (n_boot, num.size))
    j = i if paired and num.size == den.size else rng.integers(0, den.size, (n_boot, den.size))
    ratios = num[i].mean(axis=1) / den[j].mean(axis=1)
    lo, hi = np.quantile(ratios, [0.5 - level / 2, 0.5 + level / 2])
    return Estimate(point, float(lo), float(hi), int(min(num.size, den.size)))


def summarize(table, by, value: str):
    """Mean and 95 % t-interval of ``value`` per group of ``by`` (a pandas DataFrame)."""
    import pandas as pd
    rows = []
    for key, group in table.groupby(by, sort=False):
        est = mean_ci(group[value].to_numpy())
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip([by] if isinstance(by, str) else by, key)), **est.as_dict()})
    return pd.DataFrame(rows)


def paired_values(table, column: str, a: str, b: str, value: str, by: str = "seed"):
    """Values of arms ``a`` and ``b`` (rows where ``column`` equals them) aligned on
    ``by`` (seed or repeat), for paired statistics."""
    wide = table.pivot_table(index=by, columns=column, values=value)
    return wide[a].to_numpy(), wide[b].to_numpy()
