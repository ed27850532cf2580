"""Weighted distillation with unlabeled examples (Iliopoulos et al., arXiv:2210.06711).

A teacher trained on a few labels L pseudo-labels a large pool U; a student trains on L
plus the pseudo-labelled U. Weighted Distillation (WD) multiplies each pseudo-labelled
example's loss by an estimate, from a small labelled validation set V, of how likely the
teacher is right on it, so the student leans less on the teacher's likely mistakes.

Our weight functions (pluggable, :data:`WEIGHTINGS`), all functions of the teacher's
margin (top-1 minus top-2 probability):

- ``raw``: P(teacher correct | margin) by isotonic regression on V (the paper's text,
  second-hand: for hard distillation the importance weight reduces to the teacher's
  accuracy on the example; the paper groups examples by confidence and weighs each group
  by its accuracy on V). This is the main WD arm.
- ``chance``: (a - 1/K) / (1 - 1/K), clipped at 0: only the teacher's accuracy above
  chance counts (ours; a teacher at chance gets weight 0).
- ``bins``: piecewise constant, the teacher's accuracy on V per margin quantile bin (the
  histogram form the paper's Algorithm 2 is recalled to use; its exact formula was not
  readable offline).

Arms share, per seed, the splits, the teacher and the student initialisation: labelled
only; KD hard; WD hard; KD soft; WD soft; an oracle with the true labels on U; WD-hard
variants; and the positive control, where the teacher is replaced by synthetic
pseudo-labels whose accuracy is known and varies with the input (KD and WD, hard and
soft). Soft is compared with soft and hard with hard.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd
import sklearn.isotonic  # noqa: F401  imported here, so no timed arm pays for the import
import torch

from ..claims import Claim, Measurement, Rule, claims_catalog, ours, paper
from ..config import ChapterConfig, NonEmpty, OneOf, Range, require
from ..runtime import Runtime, set_seed
from ..stats import bootstrap_ratio, mean_ci
from ..toolkits import bench
from ..toolkits import distill as D
from ..training import accuracy, train

SLUG = "04_weighted_distillation"
TITLE = "Weighted distillation with unlabeled examples"
ARXIV = "2210.06711"

WEIGHTINGS = ("raw", "chance", "bins")
REAL_ARMS = ("labeled_only", "kd_hard", "wd_hard", "kd_soft", "wd_soft", "oracle")
CONTROL_ARMS = ("control_kd_hard", "control_wd_hard", "control_kd_soft", "control_wd_soft")


# ---------------------------------------------------------------- weight functions


def chance_corrected(acc, n_classes: int) -> np.ndarray:
    """(a - 1/K) / (1 - 1/K), clipped to [0, 1]: accuracy above chance, rescaled."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    a = np.asarray(acc, dtype=np.float64)
    return np.clip((a - 1.0 / n_classes) / (1.0 - 1.0 / n_classes), 0.0, 1.0)


def bin_edges(score, bins: int) -> np.ndarray:
    """Quantile edges of ``score`` with open outer bins (-inf, +inf)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    inner = np.unique(np.quantile(np.asarray(score, float), np.linspace(0, 1, bins + 1)[1:-1]))
    return np.concatenate([[-np.inf], inner, [np.inf]])


def bin_accuracy_fn(score, correct, bins: int) -> Callable[[np.ndarray], np.ndarray]:
    """A step function: the accuracy on (score, correct) of the quantile bin a new score
    falls in. An empty bin (possible only with tied scores) takes the overall accuracy."""
    s = np.asarray(score, float)
    c = np.asarray(correct, float)
    edges = bin_edges(s, bins)
    idx = np.searchsorted(edges, s, side="right") - 1
    acc = np.array([c[idx == b].mean() if (idx == b).any() else c.mean()
                    for b in range(len(edges) - 1)])
    return lambda new: acc[np.searchsorted(edges, np.asarray(new, float), side="right") - 1]


@dataclass
class WeightFit:
    """A weight function of the teacher's margin, fitted on V, with V's out-of-fold
    weights (each from a fit that did not see the example)."""
    kind: str
    fn: Callable[[np.ndarray], np.ndarray]
    oof: np.ndarray | None
    folds: np.ndarray | None

    def __call__(self, score) -> np.ndarray:
        return np.asarray(self.fn(np.asarray(score, float)), dtype=np.float64)


def fit_weights(kind: str, score_v, correct_v, n_classes: int, bins: int = 10,
                n_folds: int | None = 5, seed: int = 0) -> WeightFit:
    """Fit weight function ``kind`` (see :data:`WEIGHTINGS`) on V's margins and
    correctness, on all of V; with ``n_folds`` also cross-fitted for the out-of-fold
    weights on V (``oof``), which only evaluation needs (``n_folds=None``: skipped)."""
    if kind not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {kind!r}; choose from {', '.join(WEIGHTINGS)}")
    if n_folds is None:  # training needs only the fit on all of V: no cross-fitting
        if kind == "bins":
            fn = bin_accuracy_fn(score_v, D._check_score_correct(score_v, correct_v)[1], bins)
        else:
            iso = D.fit_isotonic(score_v, correct_v)
            fn = iso.predict if kind == "raw" else (lambda s: chance_corrected(iso.predict(s), n_classes))
        return WeightFit(kind, fn, None, None)
    cal = D.fit_calibration(score_v, correct_v, n_folds=n_folds, seed=seed)
    if kind == "raw":
        return WeightFit(kind, cal, cal.oof, cal.folds)
    if kind == "chance":
        return WeightFit(kind, lambda s: chance_corrected(cal(s), n_classes),
                         chance_corrected(cal.oof, n_classes), cal.folds)
    s, c = np.asarray(score_v, float), np.asarray(correct_v, float)
    oof = np.empty(len(s))
    for f in range(n_folds):
        held = cal.folds == f
        oof[held] = bin_accuracy_fn(s[~held], c[~held], bins)(s[held])
    return WeightFit(kind, bin_accuracy_fn(s, c, bins), oof, cal.folds)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config(ChapterConfig):
    seeds: int
    n_labeled: tuple[int, ...]
    n_val: int
    n_unlabeled: int
    n_test: int
    teacher_steps: int
    student_steps: int
    dataset: str = "fashion"
    teacher_arch: str = "cnn"
    teacher_width: int = 16
    teacher_lr: float = 1e-3
    student_arch: str = "mlp"
    student_width: int = 128
    batch_size: int = 128
    lr: float = 1e-3
    temperature: float = 2.0
    weighting: str = "raw"
    variants: tuple[str, ...] = ("chance", "bins")
    bins: int = 10
    n_folds: int = 5
    control_acc_low: float = 0.2
    control_acc_high: float = 1.0
    control_noise: str = "permuted"
    timing_repeats: int = 5
    timing_steps: int = 200

    CONSTRAINTS: ClassVar[dict] = {
        "seeds": Range(1, 50), "n_labeled": Range(10, 50000), "n_val": Range(50, 20000),
        "n_unlabeled": Range(100, 55000), "n_test": Range(100, 10000),
        "teacher_steps": Range(1, 200000), "student_steps": Range(1, 200000),
        "dataset": OneOf(D.DATASETS), "teacher_arch": OneOf(D.ARCHS),
        "teacher_width": Range(1, 1024), "teacher_lr": Range(0, 1, lo_open=True, hi_open=True),
        "student_arch": OneOf(D.ARCHS), "student_width": Range(1, 8192),
        "batch_size": Range(1, 8192), "lr": Range(0, 1, lo_open=True, hi_open=True),
        "temperature": Range(0, 100, lo_open=True), "weighting": OneOf(WEIGHTINGS),
        "variants": OneOf(WEIGHTINGS), "bins": Range(1, 1000), "n_folds": Range(2, 50),
        "control_acc_low": Range(0, 1), "control_acc_high": Range(0, 1),
        "control_noise": OneOf(D.NOISE_KINDS), "timing_repeats": Range(2, 100),
        "timing_steps": Range(1, 100000)}

    @classmethod
    def profiles(cls):
        smoke = cls(seeds=2, n_labeled=(300,), n_val=300, n_unlabeled=2000, n_test=2000,
                    teacher_steps=120, student_steps=150, teacher_width=8, student_width=16,
                    variants=(), timing_repeats=2, timing_steps=20)
        # Sized in probes on seeds 7 and 100 (never reported) so that the teacher is
        # stronger than the student trained on L alone and the oracle clearly above both.
        cpu = cls(seeds=4, n_labeled=(1000,), n_val=1000, n_unlabeled=10000, n_test=5000,
                  teacher_steps=500, student_steps=1000, student_width=32)
        gpu = cls(seeds=3, n_labeled=(7500, 10000, 12500, 15000, 17500, 20000), n_val=2000,
                  n_unlabeled=25000, n_test=10000, teacher_steps=8000, student_steps=4000,
                  dataset="cifar10", teacher_arch="cnn_bn", teacher_width=64,
                  student_arch="cnn", student_width=16, batch_size=128, timing_steps=500,
                  device="auto")
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}

    def validate(self):
        require(self.control_acc_low <= self.control_acc_high,
                f"control_acc_low ({self.control_acc_low}) must not exceed control_acc_high "
                f"({self.control_acc_high})")
        require(self.weighting not in self.variants,
                f"variants {self.variants} must not repeat the main weighting {self.weighting!r}")
        require(len(set(self.variants)) == len(self.variants), f"variants repeat: {self.variants}")
        require(len(set(self.n_labeled)) == len(self.n_labeled), f"n_labeled repeats: {self.n_labeled}")
        train_rows = {"fashion": 60000, "mnist": 60000, "cifar10": 50000}[self.dataset]
        need = max(self.n_labeled) + self.n_val + self.n_unlabeled
        require(need <= train_rows, f"max(n_labeled) + n_val + n_unlabeled = {need} exceeds "
                                    f"the {train_rows} training images of {self.dataset}")
        require(self.n_val >= 2 * self.n_folds, f"n_val must be at least 2 * n_folds")

    def teacher(self) -> D.TeacherConfig:
        return D.TeacherConfig(arch=self.teacher_arch, width=self.teacher_width,
                               steps=self.teacher_steps, batch_size=64, lr=self.teacher_lr)

    def arms(self) -> tuple[str, ...]:
        return REAL_ARMS + tuple(f"wd_hard_{v}" for v in self.variants) + CONTROL_ARMS



# ---------------------------------------------------------------- one seed's shared context


@dataclass
class Context:
    """What every arm of one (seed, n_labeled) shares."""
    seed: int
    n_labeled: int
    data: D.LabeledData
    splits: D.Splits
    teacher: D.TeacherOutputs
    control: D.SyntheticTeacher       # on U
    control_val: D.SyntheticTeacher   # on V
    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor
    y_u: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def prepare(data: D.LabeledData, cfg: Config, n_labeled: int, seed: int, rt: Runtime) -> Context:
    splits = D.make_splits(data, n_labeled, cfg.n_val, cfg.n_unlabeled, seed, n_test=cfg.n_test)
    teacher = D.teacher_outputs(data, splits, cfg.teacher(), rt)
    ctl = partial(D.synthetic_teacher, data, seed=seed, acc_low=cfg.control_acc_low,
                  acc_high=cfg.control_acc_high, noise=cfg.control_noise)
    return Context(seed, n_labeled, data, splits, teacher, ctl(splits.unlabeled), ctl(splits.val),
                   data.tensor(splits.labeled), data.labels(splits.labeled),
                   data.tensor(splits.unlabeled), data.labels(splits.unlabeled),
                   data.tensor(splits.test), data.labels(splits.test))


def teacher_logits(ctx: Context, control: bool) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(logits on U, logits on V, correct on V) of the real teacher or the control."""
    if control:
        return ctx.control.logits, ctx.control_val.logits, ctx.control_val.correct
    y_v = ctx.data.y[ctx.splits.val]
    return ctx.teacher["unlabeled"], ctx.teacher["val"], D.topk_correct(ctx.teacher["val"], y_v)


def student_accuracy(ctx: Context, ts: D.TransferSet, cfg: Config, rt: Runtime,
                     temperature: float) -> tuple[float, float]:
    """Train the seed's student on ``ts``; (test accuracy, training seconds). The same
    seed gives every arm the same initialisation and, for equal-size sets, batch order."""
    set_seed(10_000 + ctx.seed)
    model = D.make_model(cfg.student_arch, ctx.data, cfg.student_width)
    t0 = time.perf_counter()
    train(model, ts.x, ts.target, partial(D.distill_loss, temperature=temperature),
          steps=cfg.student_steps, batch_size=cfg.batch_size, lr=cfg.lr,
          rt=dataclasses.replace(rt, seed=ctx.seed), weights=ts.side, desc="student")
    seconds = time.perf_counter() - t0
    return accuracy(model, ctx.x_test, ctx.y_test, rt), seconds


def run_arm(arm: str, ctx: Context, cfg: Config, rt: Runtime) -> dict[str, float]:
    """One arm on one seed's context: test accuracy, training and weighting seconds,
    and the mean weight on U."""
    control = arm.startswith("control_")
    name = arm.removeprefix("control_")
    k = ctx.data.n_classes
    if name == "labeled_only":
        ts = D.transfer_set(ctx.x_l, ctx.y_l, ctx.x_u[:0], ctx.y_u[:0], n_classes=k)
        acc, secs = student_accuracy(ctx, ts, cfg, rt, 1.0)
        return {"test_acc": acc, "train_s": secs, "weigh_s": 0.0, "mean_weight": float("nan")}
    if name == "oracle":
        ts = D.transfer_set(ctx.x_l, ctx.y_l, ctx.x_u, ctx.y_u, n_classes=k)
        acc, secs = student_accuracy(ctx, ts, cfg, rt, 1.0)
        return {"test_acc": acc, "train_s": secs, "weigh_s": 0.0, "mean_weight": 1.0}
    method, mode, *variant = name.split("_")
    if method not in ("kd", "wd") or mode not in ("hard", "soft"):
        raise ValueError(f"unknown arm {arm!r}")
    logits_u, logits_v, correct_v = teacher_logits(ctx, control)
    weights, weigh_s = None, 0.0
    if method == "wd":
        t0 = time.perf_counter()
        kind = variant[0] if variant else cfg.weighting
        fit = fit_weights(kind, D.margin(logits_v), correct_v, k, cfg.bins, n_folds=None)
        weights = fit(D.margin(logits_u))
        weigh_s = time.perf_counter() - t0
    temperature = cfg.temperature if mode == "soft" else 1.0
    target = D.hard_labels(logits_u) if mode == "hard" else D.soft_labels(logits_u, temperature)
    ts = D.transfer_set(ctx.x_l, ctx.y_l, ctx.x_u, target, weight_u=weights, n_classes=k)
    acc, secs = student_accuracy(ctx, ts, cfg, rt, temperature)
    return {"test_acc": acc, "train_s": secs, "weigh_s": weigh_s,
            "mean_weight": float(np.mean(weights)) if weights is not None else 1.0}


# ---------------------------------------------------------------- the experiment


def teacher_summary(ctx: Context) -> dict[str, Any]:
    """Per seed: the teachers' accuracies and the calibration of the main weights."""
    y_u = ctx.data.y[ctx.splits.unlabeled]
    return {"seed": ctx.seed, "n_labeled": ctx.n_labeled,
            "teacher_test_acc": ctx.teacher.accuracy["test"],
            "teacher_unlabeled_acc": ctx.teacher.accuracy["unlabeled"],
            "teacher_val_acc": ctx.teacher.accuracy["val"],
            "teacher_from_cache": ctx.teacher.from_cache,
            "control_unlabeled_acc": float(ctx.control.correct.mean()),
            "control_mean_known_acc": float(ctx.control.accuracy.mean()),
            "teacher_train_s": ctx.teacher.train_seconds,
            "u_rows": len(y_u)}


def time_weighting(ctx: Context, cfg: Config, rt: Runtime) -> bench.BenchResult:
    """KD hard and WD hard (fitting the weights on V, weighting U, then training),
    ``timing_steps`` steps each, interleaved over ``timing_repeats`` repeats after one
    warm-up round; the arms differ only in the weighting."""
    k = ctx.data.n_classes
    logits_u, logits_v, correct_v = teacher_logits(ctx, control=False)

    def arm(weighted: bool):
        def fn() -> float:
            t0 = time.perf_counter()
            weights = None
            if weighted:
                fit = fit_weights(cfg.weighting, D.margin(logits_v), correct_v, k, cfg.bins,
                                  n_folds=None)
                weights = fit(D.margin(logits_u))
            ts = D.transfer_set(ctx.x_l, ctx.y_l, ctx.x_u, D.hard_labels(logits_u),
                                weight_u=weights, n_classes=k)
            set_seed(10_000 + ctx.seed)
            model = D.make_model(cfg.student_arch, ctx.data, cfg.student_width)
            train(model, ts.x, ts.target, D.distill_loss, steps=cfg.timing_steps,
                  batch_size=cfg.batch_size, lr=cfg.lr, rt=dataclasses.replace(rt, seed=ctx.seed),
                  weights=ts.side, desc="timing")
            return time.perf_counter() - t0
        return fn

    return bench.interleave({"kd_hard": arm(False), "wd_hard": arm(True)},
                            repeats=cfg.timing_repeats, warmup=1)


def run(cfg: Config, rt: Runtime, data: D.LabeledData | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every arm on every seed and labelled-set size. Returns ``runs`` (tidy: seed,
    n_labeled, arm, test_acc, train_s, weigh_s, mean_weight, seconds), ``teachers`` (one
    row per seed and size), ``contexts`` (the last seed's context per size, for figures)
    and ``timing`` (:func:`time_weighting` on the first size's last seed)."""
    data = data or D.load_dataset(cfg.dataset)
    tables, teachers, contexts = [], [], {}
    for n_labeled in cfg.n_labeled:
        def prep(seed, n_labeled=n_labeled):
            ctx = prepare(data, cfg, n_labeled, seed, rt)
            teachers.append(teacher_summary(ctx))
            contexts[n_labeled] = ctx
            return ctx
        arms = {arm: (lambda ctx, seed, arm=arm: run_arm(arm, ctx, cfg, rt)) for arm in cfg.arms()}
        table = D.run_paired(range(cfg.seeds), prep, arms, progress=progress)
        table.insert(1, "n_labeled", n_labeled)
        tables.append(table)
    timing = time_weighting(contexts[cfg.n_labeled[0]], cfg, rt)
    return {"runs": pd.concat(tables, ignore_index=True), "teachers": pd.DataFrame(teachers),
            "contexts": contexts, "timing": timing}


def weight_picture(ctx: Context, cfg: Config, control: bool = False, bins: int = 10) -> dict:
    """The method's picture for one seed: the fitted weight curve over the margin, and
    the teacher's accuracy per margin bin on V measured on held-out folds (each bin's
    accuracy beside the mean out-of-fold weight of the same examples), plus the truth on
    U (which the method never sees)."""
    logits_u, logits_v, correct_v = teacher_logits(ctx, control)
    m_v, m_u = D.margin(logits_v), D.margin(logits_u)
    fits = {kind: fit_weights(kind, m_v, correct_v, ctx.data.n_classes, cfg.bins, cfg.n_folds,
                              ctx.seed) for kind in WEIGHTINGS}
    grid = np.linspace(0, 1, 201)
    curves = pd.DataFrame({"margin": grid, **{kind: f(grid) for kind, f in fits.items()}})
    held = D.binned_accuracy(m_v, correct_v, bins=bins)
    edges = np.concatenate([held["lo"].to_numpy(), held["hi"].to_numpy()[-1:]])
    idx = np.clip(np.searchsorted(edges, m_v, side="right") - 1, 0, len(held) - 1)
    held["oof_weight"] = [fits[cfg.weighting].oof[idx == b].mean() for b in range(len(held))]
    y_u = ctx.data.y[ctx.splits.unlabeled]
    truth = D.binned_accuracy(m_u, D.topk_correct(logits_u, y_u), edges=edges)
    return {"curves": curves, "val_bins": held, "unlabeled_bins": truth}


def calibration_error(ctx: Context, cfg: Config, control: bool = False) -> dict[str, float]:
    """Brier score of the out-of-fold weights (as probabilities of 'teacher correct') on
    V, against a constant equal to V's accuracy, which ignores the margin."""
    _, logits_v, correct_v = teacher_logits(ctx, control)
    fit = fit_weights("raw", D.margin(logits_v), correct_v, ctx.data.n_classes, cfg.bins,
                      cfg.n_folds, ctx.seed)
    c = correct_v.astype(float)
    return {"brier_isotonic_oof": float(np.mean((fit.oof - c) ** 2)),
            "brier_constant": float(np.mean((c.mean() - c) ** 2))}


# ---------------------------------------------------------------- claims (fixed before running)

_ABSTRACT = ("abstract: a 'debiasing' reweighting of the student's loss gives 'significant "
             "improvements' over unweighted distillation")

CLAIMS = claims_catalog(
    Claim("distillation-beats-labeled-only",
          "Distilling the teacher's hard labels on U beats training the student on L alone "
          "(the premise of distillation with unlabeled examples, when the teacher is stronger "
          "than the student trained on L).",
          "test accuracy difference (KD hard - labelled only), paired by seed",
          Rule(0.0), origin=paper("abstract: the setting of distillation with unlabeled examples")),
    Claim("wd-beats-kd-hard",
          "With the real teacher, weighted distillation beats unweighted distillation, hard "
          "labels vs hard labels.",
          "test accuracy difference (WD hard - KD hard), paired by seed",
          Rule(0.0), origin=paper(_ABSTRACT), paper_value="significant improvements (no number offline)"),
    Claim("wd-beats-kd-soft",
          "With the real teacher, weighted distillation beats unweighted distillation, soft "
          "labels vs soft labels.",
          "test accuracy difference (WD soft - KD soft), paired by seed",
          Rule(0.0), origin=paper(_ABSTRACT), paper_value="significant improvements (no number offline)"),
    Claim("wd-beats-kd-hard-control",
          "Positive control: when the pseudo-labels' accuracy is known to vary with the input "
          "(the method's assumption holds by construction), WD beats KD, hard vs hard.",
          "test accuracy difference (control WD hard - control KD hard), paired by seed",
          Rule(0.0), origin=ours("positive control: synthetic pseudo-label noise with known, "
                                 "input-dependent accuracy")),
    Claim("wd-beats-kd-soft-control",
          "Positive control: WD beats KD, soft vs soft, when the pseudo-labels' accuracy "
          "varies with the input.",
          "test accuracy difference (control WD soft - control KD soft), paired by seed",
          Rule(0.0), origin=ours("positive control: synthetic pseudo-label noise with known, "
                                 "input-dependent accuracy")),
    Claim("wd-no-extra-time",
          "The weighting costs no extra training time: WD's wall time (fitting the weights "
          "plus training) is within 10 % of KD's (hard labels, same steps).",
          "time ratio (WD hard: weights + training) / (KD hard: training), paired by seed",
          Rule(1.10, direction="below"),
          origin=ours("the abstract calls the method 'simple to implement'; the weights are "
                      "computed once before training")),
)


def _per_seed_diff(runs: pd.DataFrame, a: str, b: str, value: str = "test_acc") -> np.ndarray:
    """Per seed: value(a) - value(b), averaged over the labelled-set sizes of the sweep."""
    wide = runs.pivot_table(index=["seed", "n_labeled"], columns="arm", values=value)
    if a not in wide or b not in wide:
        raise KeyError(f"arms {a!r} and {b!r} must both have run")
    return (wide[a] - wide[b]).groupby(level="seed").mean().to_numpy()


def measure(results: dict[str, Any]) -> dict[str, Measurement]:
    """One measurement per claim, from :func:`run`'s results."""
    runs, teachers = results["runs"], results["teachers"]
    gap = (teachers["teacher_test_acc"].mean()
           - runs[runs.arm == "labeled_only"]["test_acc"].mean())
    out = {"distillation-beats-labeled-only": Measurement(
        mean_ci(_per_seed_diff(runs, "kd_hard", "labeled_only")),
        f"the teacher's test accuracy exceeds the labelled-only student's by {100 * gap:.1f} "
        f"points on average")}
    for cid, a, b in (("wd-beats-kd-hard", "wd_hard", "kd_hard"),
                      ("wd-beats-kd-soft", "wd_soft", "kd_soft"),
                      ("wd-beats-kd-hard-control", "control_wd_hard", "control_kd_hard"),
                      ("wd-beats-kd-soft-control", "control_wd_soft", "control_kd_soft")):
        out[cid] = Measurement(mean_ci(_per_seed_diff(runs, a, b)))
    out["wd-no-extra-time"] = timing_measurement(results["timing"])
    return out


def timing_measurement(timing: bench.BenchResult) -> Measurement:
    """The time ratio WD/KD over the quiet repeats (at least 3), or withheld with the
    reason when the machine was loaded (interference only ever adds time)."""
    quiet = timing.quiet_repeats()
    all_reps = timing.ratio("wd_hard", "kd_hard")
    seen = (f"all {timing.repeats} repeats: ratio {all_reps.mean:.3f} "
            f"[{all_reps.ci_low:.3f}, {all_reps.ci_high:.3f}], ratio of minima "
            f"{timing.min_ratio('wd_hard', 'kd_hard'):.3f}; {timing.interference.describe()}")
    if quiet >= 3:
        return Measurement(timing.ratio("wd_hard", "kd_hard", quiet_only=True),
                           f"{quiet} quiet repeats; {seen}")
    return Measurement(None, f"withheld: only {quiet} of {timing.repeats} repeats were quiet "
                             f"({timing.gate() or 'per-repeat interference'}); {seen}")


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy and 95 % t-interval per arm (and labelled-set size)."""
    rows = []
    for (n, arm), g in runs.groupby(["n_labeled", "arm"], sort=False):
        est = mean_ci(g["test_acc"].to_numpy())
        rows.append({"n_labeled": n, "arm": arm, "mean": est.mean, "ci_low": est.ci_low,
                     "ci_high": est.ci_high, "n": est.n,
                     "mean_weight": g["mean_weight"].mean(), "train_s": g["train_s"].median()})
    return pd.DataFrame(rows)


def paired_differences(runs: pd.DataFrame, variants=()) -> pd.DataFrame:
    """Test-accuracy differences between the arms the chapter compares, paired by seed
    (mean, 95 % CI, n): the premise (KD over L alone), WD over KD (hard, soft, each weight
    variant), the positive control, and the oracle's headroom."""
    comparisons = [("kd_hard", "labeled_only"), ("wd_hard", "kd_hard"), ("wd_soft", "kd_soft"),
                   *[(f"wd_hard_{v}", "kd_hard") for v in variants],
                   ("control_wd_hard", "control_kd_hard"),
                   ("control_wd_soft", "control_kd_soft"), ("oracle", "kd_hard")]
    return pd.DataFrame([{"comparison": f"{a} - {b}",
                          **D.paired_estimate(runs, a, b, "test_acc").as_dict()}
                         for a, b in comparisons])[["comparison", "mean", "ci_low", "ci_high", "n"]]


def prose_values(table: pd.DataFrame, diffs: pd.DataFrame, teachers: pd.DataFrame) -> dict[str, float]:
    """The figures the chapter's prose quotes (glued, never typed): mean accuracy per arm,
    the teachers' accuracies, and the main paired differences in points."""
    acc = table.groupby("arm")["mean"].mean()
    v = {f"acc_{arm}": float(acc[arm]) for arm in (
        "labeled_only", "kd_hard", "wd_hard", "kd_soft", "wd_soft", "oracle",
        "control_kd_hard", "control_wd_hard", "control_kd_soft", "control_wd_soft")}
    t = teachers.mean(numeric_only=True)
    v.update(teacher_test=float(t["teacher_test_acc"]), teacher_u=float(t["teacher_unlabeled_acc"]),
             control_u=float(t["control_unlabeled_acc"]))
    d = diffs.set_index("comparison")
    for key, cmp in (("real_hard", "wd_hard - kd_hard"), ("real_soft", "wd_soft - kd_soft"),
                     ("ctl_hard", "control_wd_hard - control_kd_hard"),
                     ("ctl_soft", "control_wd_soft - control_kd_soft"),
                     ("premise", "kd_hard - labeled_only")):
        v[f"d_{key}"] = 100 * float(d.loc[cmp, "mean"])
        v[f"d_{key}_lo"] = 100 * float(d.loc[cmp, "ci_low"])
        v[f"d_{key}_hi"] = 100 * float(d.loc[cmp, "ci_high"])
    return v
