# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: effdl (venv)
#     language: python
#     name: effdl
# ---

# %% [markdown]
# # Robust active distillation
#
# **Paper.** Cenk Baykal, Khoa Trinh, Fotis Iliopoulos, Gaurav Menghani and Erik Vee,
# *Robust Active Distillation* {cite}`baykal2023rad`, ICLR 2023, arXiv:2210.01213.
# Survey area: learning techniques (distillation). No code was released.
#
# **The setting** is chapters 04 and 05's, with one change: asking the teacher costs
# something. A student has a few labels L; an unlabeled pool U is large, but only $b$
# pool points per round may be sent to the teacher for its soft labels. Which ones?
#
# **The problem.** Uncertainty rules (margin, entropy, least confidence) ask about the
# points where the student is least sure, and those are exactly where the teacher errs
# most: the student then learns the teacher's mistakes.
#
# **The idea.** A game between informativeness and correctness. The learner spreads
# $b$ units of query probability $q_i \le 1$ over the pool to maximise the expected
# gain $\sum_i q_i g_i$ ($g_i = 1 - $ the student's margin); an adversary deletes the
# value of the $m$ points that hurt most (the teacher's mistakes; $m$ is estimated from
# the teacher's error on the labelled validation split V):
#
# $$\max_{q}\ \sum_i q_i g_i - \max_{|M| = m} \sum_{i \in M} q_i g_i,\qquad
#   \sum_i q_i = b,\ 0 \le q_i \le 1.$$
#
# Without the caps the solution is a closed form: sort the gains, $S_k = \sum_{j \le k}
# 1/g_j$, $k^* = \arg\max_{k > m} (k - m)/S_k$ and $q_i = b\,(1/g_i)/S_{k^*}$ on the top
# $k^*$, so every chosen point carries the same $q_i g_i$ and no single deletion hurts
# more than another. DepRound then draws exactly $b$ distinct points with
# $P(i) = q_i$. With $m = 0$, $k^* = 1$: the caps bind and the answer is greedy margin;
# with $m$ near the pool size, $k^*$ covers the pool and the rule approaches random.
#
# **What we can and cannot check.** The paper's result tables were not readable offline
# (the algorithm's names and the game are from the paper; the formulas above are
# derived, and tested against an LP). We test the mechanism (RAD's queries are more
# often right) and the accuracy claim at Fashion-MNIST scale, with a weak and a strong
# teacher. Code: `effdl_lib/chapters/active_distillation.py`, on the distillation toolkit
# `effdl_lib/toolkits/distill.py`.

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effdl_lib import plots
from effdl_lib.chapter import start
from effdl_lib.chapters import active_distillation as ad
from effdl_lib.config import ConfigError
from effdl_lib.records import glue

pd.set_option("display.max_colwidth", 200)
_names_before = set(globals())

# %% tags=["parameters"]
profile = "cpu"  # smoke | cpu | gpu
threads = None  # int [1, 256]
device = None  # str one of cpu, cuda, auto
seeds = None  # int [1, 50]
n_labeled = None  # int [10, 20000]
n_val = None  # int [50, 20000]
n_pool = None  # int [100, 55000]
n_test = None  # int [100, 10000]
rounds = None  # int [1, 100]
budget = None  # int [1, 10000]
init_steps = None  # int [1, 200000]
round_steps = None  # int [1, 200000]
weak_labels = None  # int [10, 50000]
weak_width = None  # int [1, 4096]
weak_steps = None  # int [1, 200000]
strong_labels = None  # int [10, 50000]
strong_width = None  # int [1, 4096]
strong_steps = None  # int [1, 200000]
dataset = None  # str one of fashion, mnist
student_width = None  # int [1, 4096]
batch_size = None  # int [1, 8192]
lr = None  # float (0, 1)
temperature = None  # float (0, 100]
rules = None  # tuple[str, ...] one of random, margin, entropy, least_confidence, rad
settings = None  # tuple[str, ...] one of weak, strong
speed_pool = None  # int [10, 1e+07]
lp_pool = None  # int [10, 100000]
speed_repeats = None  # int [1, 100]

# %% [markdown]
# ## Set-up
#
# Every parameter above can be overridden from papermill (`-p NAME VALUE`; `None` takes
# the profile's value). A bad one fails at once, with the valid choices:

# %%
cfg, rt, record = start(ad, profile, globals(), _names_before)
pd.DataFrame([cfg.asdict()]).T.rename(columns={0: "value"})

# %%
# NBVAL_CHECK_OUTPUT
for bad in [("cpu", {"rules": ["margin", "coreset"]}), ("cpu", {"budget": 0}),
            ("cpu", {"rounds": 50, "budget": 1000})]:
    try:
        ad.Config.resolve(*bad)
    except ConfigError as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## The selection game, checked by hand
#
# Gains $(1, \tfrac12, \tfrac14)$, $m = 1$, $b = 1$: $S = (1, 3, 7)$ and $(k - 1)/S_k =
# (0, \tfrac13, \tfrac27)$, so $k^* = 2$ and $q = (\tfrac13, \tfrac23, 0)$: both chosen
# points carry $q_i g_i = \tfrac13$, and the game's value is $\tfrac23 - \tfrac13 =
# \tfrac13$. The LP (SciPy's HiGHS) solves the same game from scratch; at $m = 0$ with
# $b = 2$ both give greedy top-2. Bad budgets and gains fail with a clear message.
#
# ```{literalinclude} ../effdl_lib/chapters/active_distillation.py
# :pyobject: rad_closed_form
# ```

# %%
# NBVAL_CHECK_OUTPUT
_g = [1.0, 0.5, 0.25]
_cf, _lp = ad.rad_closed_form(_g, 1, 1), ad.rad_lp(_g, 1, 1)
print("closed form q =", np.round(_cf.q, 4), "k* =", _cf.k_star, "value =", round(_cf.value, 4))
print("LP          q =", np.round(_lp.q, 4), "value =", round(_lp.value, 4))
print("m = 0, b = 2:", np.round(ad.rad_marginals(_g, 0, 2).q, 4), np.round(ad.rad_lp(_g, 0, 2).q, 4))
for _args in [(_g, 1, 0), (_g, 1, 4), ([0.5, -0.1, 0.2], 0, 1)]:
    try:
        ad.rad_marginals(*_args)
    except ValueError as err:
        print(f"ValueError: {err}")

# %% [markdown]
# When the closed form asks for some $q_i > 1$ (small gains get large $q_i$, and
# at small $m$ the top gains need more than one draw each), `rad_marginals` solves
# the capped game exactly: a level $c$, $q_i g_i = \min(c, g_i)$, found at the kinks
# of a concave piecewise-linear value in $O(n \log n)$; the unit tests compare it with
# the LP on random pools. DepRound draws exactly $b$ distinct points with the asked
# marginals; over 20,000 draws from a small pool:

# %%
# NBVAL_CHECK_OUTPUT
_q = np.array([0.9, 0.05, 0.5, 0.35, 0.2, 1.0, 0.0, 0.6, 0.4])
_rng = np.random.default_rng(2024)
_counts, _sizes = np.zeros(_q.size), set()
for _ in range(20_000):
    _idx = ad.depround(_q, _rng)
    _sizes.add(len(np.unique(_idx)))
    _counts[_idx] += 1
print("distinct points per draw:", sorted(_sizes), "(b =", round(_q.sum()), ")")
print("largest |empirical - asked| marginal:", round(float(np.abs(_counts / 20_000 - _q).max()), 4))

# %% [markdown]
# ## The active loop
#
# Per seed: L, V, U (the pool) and test from the toolkit's `make_splits`; two teachers
# trained on labelled supersets of L (the toolkit keeps V, U and test fixed and the
# smaller labelled set a prefix of the larger), their logits cached on disk:
#
# | setting | teacher |
# |---|---|
# | weak | an MLP with `weak_width` hidden units on `weak_labels` labels |
# | strong | an MLP with `strong_width` hidden units on `strong_labels` labels |
#
# The student (an MLP with `student_width` units) is trained on L once per seed and
# copied for every rule and setting. Each round it scores the remaining pool, the rule
# picks `budget` points, the teacher is queried (a counter refuses repeated queries and
# checks the total), and the student continues training on L (true labels) plus every
# queried point (the teacher's soft labels) for `round_steps` steps. Same budget,
# schedule and seeds for every rule; RAD's $m$ is the teacher's error rate on V times
# the remaining pool.

# %%
results = ad.run(cfg, rt)
rounds = results["rounds"]
seeds_table = ad.per_seed(rounds)
teachers = results["teachers"]
teachers.groupby("setting")[["teacher_labels", "val_acc", "pool_acc", "test_acc", "m_rate",
                            "student_L_acc"]].mean().round(3)

# %% [markdown]
# ## Accuracy against queries
#
# Student test accuracy after each round, mean over seeds with 95 % bands, for the weak
# (left) and the strong teacher (right). Round 0 is the student trained on L alone.

# %% mystnb={"figure": {"caption": "Student test accuracy against the number of teacher queries, per selection rule, mean over paired seeds with 95% CI bands; weak teacher left, strong teacher right.", "name": "fig-rad-curves"}}
fig, axes = plt.subplots(1, len(cfg.settings), figsize=(5.5 * len(cfg.settings), 4), sharey=True,
                         squeeze=False)
for ax, setting in zip(axes[0], cfg.settings):
    plots.lines_with_ci(ad.curve_summary(rounds, setting), "queries", "rule", ax=ax, scale=100,
                        title=f"{setting} teacher, n={cfg.seeds} seeds",
                        xlabel="teacher queries", ylabel="student test accuracy (%)")
plt.show()

# %% [markdown]
# ## What each rule asks the teacher about
#
# Per setting and rule, mean over seeds and rounds: the teacher's accuracy on the
# queried points, their informativeness ($1 -$ student margin), $k^*$ (pool points with
# a positive chance of being picked) and $m$, and the final student accuracy.

# %%
ad.rule_table(seeds_table).round(3)

# %% [markdown]
# The mechanism in one picture: each point is one seed and round; the teacher is right
# less often on more informative queries, and RAD sits between random and margin.

# %% mystnb={"figure": {"caption": "Teacher accuracy on the queried points against their mean informativeness (1 - student margin), one marker per seed and round; weak teacher left, strong teacher right.", "name": "fig-rad-mechanism"}}
fig, axes = plt.subplots(1, len(cfg.settings), figsize=(5.5 * len(cfg.settings), 4), sharey=True,
                         squeeze=False)
_q = rounds[rounds["round"] > 0]
for ax, setting in zip(axes[0], cfg.settings):
    for rule in cfg.rules:
        _s = _q[(_q.setting == setting) & (_q.rule == rule)]
        ax.scatter(_s["informativeness"], 100 * _s["teacher_acc_queried"], label=rule, alpha=0.7, s=18)
    ax.set_xlabel("mean informativeness of the queried points")
    ax.set_ylabel("teacher accuracy on the queried points (%)")
    ax.set_title(f"{setting} teacher")
    ax.grid(alpha=0.3)
    ax.legend(title="rule", fontsize=8)
plt.show()

# %% [markdown]
# ## From margin to random as $m$ grows
#
# No sampling here: for the first seed's initial student on the whole pool, RAD's
# marginals $q$ give exactly the expected share of margin's top-$b$ that RAD picks, the
# expected informativeness and each teacher's expected accuracy on the picks, as $m$
# runs from 0 to 90 % of the pool. The dotted lines mark each teacher's estimated
# $m$ (its error on V).

# %% mystnb={"figure": {"caption": "RAD's marginals as the adversary's budget m grows: share of pool with positive probability, overlap with margin's top-b, expected informativeness and expected teacher accuracy on the picks; margin at m = 0, random as m approaches the pool.", "name": "fig-rad-sweep"}}
sweep = results["sweep"]
_rad = sweep[sweep.rule == "rad"]
_ends = sweep[sweep.rule != "rad"].set_index("rule")
_x = _rad["m_fraction"].clip(lower=3e-4)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].plot(_x, _rad["k_star_fraction"], marker="o", label="k* / pool")
axes[0].plot(_x, _rad["overlap_margin"], marker="s", label="overlap with margin's top-b")
axes[0].plot(_x, _rad["informativeness"], marker="^", label="expected informativeness")
axes[0].axhline(_ends.loc["random", "informativeness"], color="gray", ls=":",
                label="random's informativeness")
axes[0].set_xscale("log")
axes[0].set_xlabel("m / pool (m = 0 drawn at the left edge)")
axes[0].set_ylabel("share")
axes[0].legend(fontsize=8)
axes[0].grid(alpha=0.3)
for setting, color in zip(cfg.settings, ("tab:red", "tab:green")):
    axes[1].plot(_x, 100 * _rad[f"teacher_acc_{setting}"], marker="o", color=color,
                 label=f"RAD, {setting} teacher")
    for rule, ls in (("margin", "--"), ("random", "-.")):
        axes[1].axhline(100 * _ends.loc[rule, f"teacher_acc_{setting}"], color=color, ls=ls, alpha=0.6,
                        label=f"{rule}, {setting} teacher")
    _m = teachers[(teachers.seed == 0) & (teachers.setting == setting)]["m_rate"]
    axes[1].axvline(float(_m.iloc[0]), color=color, ls=":")
axes[1].set_xscale("log")
axes[1].set_xlabel("m / pool")
axes[1].set_ylabel("expected teacher accuracy on the picks (%)")
axes[1].legend(fontsize=7)
axes[1].grid(alpha=0.3)
plt.show()

# %%
sweep.round(3)

# %% [markdown]
# ## Speed
#
# Selection time, interleaved repeats in one process at one thread: RAD (closed-form
# marginals plus DepRound) on `speed_pool` points, with `np.argsort` of the same gains
# beside it as the floor (the closed form sorts the gains once), and on `lp_pool`
# points RAD against the HiGHS LP of the same game (both checked to reach the same
# value). The LP runs on the smaller pool because its time grows faster than linearly
# with the pool size, which puts $10^5$ points out of this chapter's five-minute budget.
# Times in seconds; the machine's load during the section is recorded in the claim
# notes.

# %%
speed = results["speed"]
speed.summary().round(5)

# %% [markdown]
# ## Claims
#
# Each claim's rule and origin were fixed in `effdl_lib/chapters/active_distillation.py`
# before running; `measure` computes every estimate there, paired by seed (0.01 = 1
# point). "At least as accurate" is a non-inferiority rule: the interval must lie above
# $-0.5$ points. It is the reading of the paper's claim and weaker than it, so it
# is marked as ours; the paper's own claim, that RAD's students are *more* accurate, is
# tested strictly beside it (`rad-beats-*`). (An independent review asked for that split
# after the first cpu run; the rules did not change, a claim was added.)
#
# ```{literalinclude} ../effdl_lib/chapters/active_distillation.py
# :pyobject: measure
# ```

# %%
record.check_all(ad.measure(results))
_tab = ad.rule_table(seeds_table)
for _s in cfg.settings:
    for _r in cfg.rules:
        glue(f"acc_{_s}_{_r}", float(_tab.loc[(_s, _r), "final_test_acc"]))
        glue(f"tacc_{_s}_{_r}", float(_tab.loc[(_s, _r), "teacher_acc_queried"]))
        glue(f"inf_{_s}_{_r}", float(_tab.loc[(_s, _r), "informativeness"]))
    glue(f"teacher_{_s}", float(teachers[teachers.setting == _s]["pool_acc"].mean()))
    glue(f"mrate_{_s}", float(teachers[teachers.setting == _s]["m_rate"].mean()))
glue("student_L", float(teachers["student_L_acc"].mean()))
_v = {c.claim.id: c.verdict for c in record.checks}
for _cid in ad.CLAIMS:
    glue(f"verdict_{_cid}", _v[_cid])
glue("rad_big_s", float(np.nanmin(speed.values("rad_big"))))
glue("lp_ratio", float(speed.min_ratio("lp_small", "rad_small")))
record.table()

# %% [markdown]
# **Reading the record.** The student trained on L alone reaches
# {glue:text}`student_L:.1%`. The weak teacher labels the pool with
# {glue:text}`teacher_weak:.1%` accuracy (so $m$ is {glue:text}`mrate_weak:.0%` of the
# pool); the strong one with {glue:text}`teacher_strong:.1%`
# ($m$ = {glue:text}`mrate_strong:.0%`). With the weak teacher the teacher is right on
# {glue:text}`tacc_weak_random:.1%` of random queries, {glue:text}`tacc_weak_margin:.1%` of
# margin's and {glue:text}`tacc_weak_rad:.1%` of RAD's, whose informativeness
# ({glue:text}`inf_weak_rad:.2f`) lies between random's ({glue:text}`inf_weak_random:.2f`)
# and margin's ({glue:text}`inf_weak_margin:.2f`): verdict on "more often right than
# margin" **{glue:text}`verdict_rad-queries-more-correct-weak`**, on "above the
# random-margin line" **{glue:text}`verdict_rad-above-tradeoff-line-weak`**. After the
# last round the weak-teacher students reach {glue:text}`acc_weak_rad:.1%` with RAD,
# {glue:text}`acc_weak_margin:.1%` with margin and {glue:text}`acc_weak_random:.1%` with
# random queries (at least as accurate: **{glue:text}`verdict_rad-student-vs-margin-weak`**
# and **{glue:text}`verdict_rad-student-vs-random-weak`**; strictly more accurate, the
# paper's claim: **{glue:text}`verdict_rad-beats-margin-weak`** and
# **{glue:text}`verdict_rad-beats-random-weak`**); with the strong teacher
# {glue:text}`acc_strong_rad:.1%` against {glue:text}`acc_strong_margin:.1%` for margin
# (**{glue:text}`verdict_rad-student-vs-margin-strong`**). RAD selects from the large pool
# in {glue:text}`rad_big_s:.3f` s at best, and the LP of the same game is
# {glue:text}`lp_ratio:.0f` times slower than the closed form on the small pool.
#
# **Beyond the claims.** Entropy and least confidence, whose queries the weak teacher
# gets right least often ({glue:text}`tacc_weak_entropy:.1%` and
# {glue:text}`tacc_weak_least_confidence:.1%`), end at {glue:text}`acc_weak_entropy:.1%`
# and {glue:text}`acc_weak_least_confidence:.1%`. RAD's estimated $m$ is a sizeable share
# of the pool, so its support $k^*$ covers much of the pool and its queries sit near
# random's in informativeness; it buys correctness, but not more cheaply than mixing
# random and margin queries would (the trade-off claim). The reason is visible in the
# closed form: on its support $q_i \propto 1/g_i$, so the least informative points of
# the support are the likeliest picks. The $m$ sweep shows both limits of the game:
# RAD is greedy margin at $m = 0$ and approaches random as $m$ nears the pool; close to
# the pool size its picks are even more often right than random's, because
# $q_i \propto 1/g_i$ then favours the points the student is surest about.
#
# **Choices the paper's text did not fix (ours).** The gain is $1 -$ margin of the
# student's softmax; $m$ is the teacher's error rate on V times the remaining pool,
# re-estimated each round; the budget constraint with caps $q_i \le 1$ is solved
# exactly (the closed form when its caps hold); the student continues training after
# each round rather than restarting; the teacher's answers are its soft labels at
# temperature 1.
#
# **Limits.** MLP teachers and student on Fashion-MNIST, a 10,000-point pool and a few
# hundred queries; the paper's CIFAR, SVHN and ImageNet runs and its cluster-margin and
# core-set baselines are not run here. The intervals are over few seeds, with teachers
# retrained per seed, so they include teacher-to-teacher variation.

# %%
record.write();
