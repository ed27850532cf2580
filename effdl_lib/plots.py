"""Plots with confidence intervals, in one style across chapters."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def bar_with_ci(summary, label: str, ax=None, scale: float = 1.0, highlight=(), title: str = "",
                xlabel: str = "mean and 95% CI", ylabel: str | None = None,
                highlight_label: str = "highlighted", other_label: str = "other"):
    """Horizontal bars of ``mean`` with ``ci_low``/``ci_high`` whiskers, one per row;
    both axes labelled, and a legend when some bars are highlighted."""
    ax = ax or plt.subplots(figsize=(6.5, 0.45 * len(summary) + 1))[1]
    mean = summary["mean"].to_numpy() * scale
    err = np.vstack([mean - summary["ci_low"].to_numpy() * scale,
                     summary["ci_high"].to_numpy() * scale - mean])
    colors = ["tab:orange" if l in highlight else "tab:blue" for l in summary[label]]
    ax.barh(summary[label].astype(str), mean, xerr=err, color=colors, capsize=3)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or label)
    if highlight:
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(color="tab:orange", label=highlight_label),
                           Patch(color="tab:blue", label=other_label)], loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return ax


def lines_with_ci(summary, x: str, group: str, ax=None, scale: float = 1.0, logx=False,
                  title: str = "", xlabel: str | None = None, ylabel: str = "mean and 95% CI"):
    """One line per ``group`` over ``x``, with a shaded 95 % interval; both axes labelled
    and the legend titled by ``group``."""
    ax = ax or plt.subplots(figsize=(6.5, 4))[1]
    for name, g in summary.groupby(group, sort=False):
        g = g.sort_values(x)
        ax.plot(g[x], g["mean"] * scale, marker="o", label=str(name))
        ax.fill_between(g[x], g["ci_low"] * scale, g["ci_high"] * scale, alpha=0.2)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    ax.legend(title=group)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return ax


def image_grid(rows: dict, n: int = 8, title: str = ""):
    """A grid of example images: one row per named uint8 array [k, h, w]."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0))
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    return fig
