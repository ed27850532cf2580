"""Small-sample statistics: t-intervals over seeds, paired differences, bootstrap ratios."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A mean (or ratio of means) with its 95 % interval and the samples it came from.

    ``method`` says how to recompute it from ``samples`` (see :func:`recompute`): "t"
    (Student-t over the samples, e.g. paired differences per seed), "ratio" (paired or
    unpaired bootstrap of mean(samples) / mean(samples_den)), or "point" (a
    deterministic quantity; no interval)."""
    mean: float
    ci_low: float
    ci_high: float
    n: int
    method: str = "given"
    samples: tuple[float, ...] | None = None
    samples_den: tuple[float, ...] | None = None
    options: tuple[tuple[str, object], ...] = ()

    def as_dict(self) -> dict:
        out = {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n,
               "method": self.method}
        if self.samples is not None:
            out["samples"] = list(self.samples)
        if self.samples_den is not None:
            out["samples_den"] = list(self.samples_den)
        if self.options:
            out["options"] = dict(self.options)
        return out

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
    kept = tuple(float(v) for v in x)
    opts = () if level == 0.95 else (("level", level),)
    if x.size < 2:
        return Estimate(mean, mean, mean, 1, "t", kept, options=opts)
    from scipy import stats as _st  # imported here: allocator subprocesses start faster
    half = float(_st.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Estimate(mean, mean - half, mean + half, int(x.size), "t", kept, options=opts)


def point(value: float) -> Estimate:
    """A deterministic quantity (bytes, a same-page fraction): no interval and n = 1, so
    a rule that decides on it says ``min_n=1``."""
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"point estimate must be finite, got {value!r}")
    return Estimate(v, v, v, 1, "point", (v,))


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
    ratio_of_means = float(num.mean() / den.mean())
    i = rng.integers(0, num.size, (n_boot, num.size))
    j = i if paired and num.size == den.size else rng.integers(0, den.size, (n_boot, den.size))
    ratios = num[i].mean(axis=1) / den[j].mean(axis=1)
    lo, hi = np.quantile(ratios, [0.5 - level / 2, 0.5 + level / 2])
    opts = (("level", level), ("n_boot", n_boot), ("paired", paired), ("seed", seed))
    return Estimate(ratio_of_means, float(lo), float(hi), int(min(num.size, den.size)), "ratio",
                    tuple(map(float, num)), tuple(map(float, den)), opts)


def bootstrap_share(num: Sequence[float], den: Sequence[float], level: float = 0.95,
                    n_boot: int = 10_000, seed: int = 0) -> Estimate:
    """Share mean(num) / mean(den) of paired gains that may be negative (e.g. the share
    of an extra layer's loss reduction a cheaper variant achieves), with a paired
    percentile bootstrap interval. ``den``'s mean must be positive; replicates whose
    denominator mean is not positive are counted as an unbounded share (+inf if their
    numerator mean is positive, -inf otherwise), so the interval widens instead of
    silently dropping them."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if (num.size == 0 or num.shape != den.shape or not np.all(np.isfinite(num))
            or not np.all(np.isfinite(den)) or den.mean() <= 0):
        raise ValueError("bootstrap_share needs paired, finite, non-empty gains whose "
                         "denominator mean is positive")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, num.size, (n_boot, num.size))
    nm, dm = num[i].mean(axis=1), den[i].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(dm > 0, nm / np.where(dm > 0, dm, 1.0), np.where(nm > 0, np.inf, -np.inf))
    # inverted_cdf picks replicate values: no interpolation between infinite ones
    lo, hi = np.quantile(shares, [0.5 - level / 2, 0.5 + level / 2], method="inverted_cdf")
    opts = (("level", level), ("n_boot", n_boot), ("seed", seed))
    return Estimate(float(num.mean() / den.mean()), float(lo), float(hi), int(num.size), "share",
                    tuple(map(float, num)), tuple(map(float, den)), opts)


def recompute(measured: dict) -> Estimate:
    """The estimate again, from a record's stored samples and method: the check that a
    committed verdict follows from its data and its rule."""
    method, opts = measured.get("method"), measured.get("options", {})
    if method == "t":
        return mean_ci(measured["samples"], opts.get("level", 0.95))
    if method == "ratio":
        return bootstrap_ratio(measured["samples"], measured["samples_den"], **opts)
    if method == "point":
        return point(measured["samples"][0])
    if method == "share":
        return bootstrap_share(measured["samples"], measured["samples_den"], **opts)
    raise ValueError(f"cannot recompute an estimate of method {method!r} (no samples kept)")


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
