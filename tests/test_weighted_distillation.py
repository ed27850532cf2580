"""Chapter 04: weight functions, configuration, the arms end to end on toy data, measure()."""
import numpy as np
import pandas as pd
import pytest

from effdl_lib.chapter import check_chapter
from effdl_lib.chapters import weighted_distillation as wd
from effdl_lib.claims import Measurement
from effdl_lib.config import ConfigError
from effdl_lib.runtime import setup
from effdl_lib.toolkits import bench
from effdl_lib.toolkits import distill as D


# ---------------------------------------------------------------- weight functions

def test_chance_corrected_hand_values():
    got = wd.chance_corrected([1.0, 0.55, 0.1, 0.05, 0.0], 10)
    assert got.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])
    assert wd.chance_corrected([0.75], 2).tolist() == pytest.approx([0.5])
    with pytest.raises(ValueError):
        wd.chance_corrected([0.5], 1)


def test_bin_accuracy_hand_case():
    fn = wd.bin_accuracy_fn([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], bins=2)
    assert fn(np.array([0.15, 0.35, -1.0, 5.0])).tolist() == [0.0, 1.0, 0.0, 1.0]
    fn = wd.bin_accuracy_fn([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1, 0, 0, 1, 1, 1], bins=3)
    assert fn(np.array([0.1, 0.3, 0.6])).tolist() == pytest.approx([0.5, 0.5, 1.0])
    with pytest.raises(ValueError):
        wd.bin_edges([0.1, 0.2], 0)


@pytest.mark.parametrize("kind", wd.WEIGHTINGS)
@pytest.mark.parametrize("n_folds", [None, 4])
def test_weights_of_a_perfect_teacher_are_all_one(kind, n_folds):
    rng = np.random.default_rng(0)
    margins_v, margins_u = rng.random(200), rng.random(1000)
    fit = wd.fit_weights(kind, margins_v, np.ones(200, bool), 10, bins=5, n_folds=n_folds)
    assert np.all(fit(margins_u) == 1.0)
    if n_folds:
        assert np.all(fit.oof == 1.0)
    else:
        assert fit.oof is None


def test_raw_weights_match_isotonic_and_chance_rescales_them():
    score, correct = [0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]
    raw = wd.fit_weights("raw", score, correct, 4, n_folds=None)
    assert raw(score).tolist() == pytest.approx([0.0, 0.5, 0.5, 1.0])
    chance = wd.fit_weights("chance", score, correct, 4, n_folds=None)
    assert chance(score).tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 1.0])  # (a - 1/4) / (3/4)


def test_weights_monotone_cross_fitted_and_bad_kind():
    rng = np.random.default_rng(1)
    m = rng.random(500)
    correct = rng.random(500) < 0.1 + 0.85 * m
    for kind in ("raw", "chance"):
        fit = wd.fit_weights(kind, m, correct, 10, n_folds=5, seed=0)
        grid = np.linspace(0, 1, 101)
        assert np.all(np.diff(fit(grid)) >= 0)
        assert fit.oof.shape == (500,) and set(np.unique(fit.folds)) == set(range(5))
    fit = wd.fit_weights("bins", m, correct, 10, bins=5, n_folds=5, seed=0)
    held = fit.folds == 0  # out-of-fold = a fit on the other folds
    ref = wd.bin_accuracy_fn(m[~held], correct[~held], 5)(m[held])
    assert np.allclose(fit.oof[held], ref)
    with pytest.raises(ValueError, match="unknown weighting"):
        wd.fit_weights("softmax", m, correct, 10)


# ---------------------------------------------------------------- configuration

def test_chapter_module_is_sound():
    assert check_chapter(wd) == []
    cpu = wd.Config.resolve("cpu")
    assert cpu.arms() == wd.REAL_ARMS + ("wd_hard_chance", "wd_hard_bins") + wd.CONTROL_ARMS
    assert cpu.teacher().steps == cpu.teacher_steps


@pytest.mark.parametrize("bad, match", [
    ({"weighting": "softmax"}, "weighting"),
    ({"variants": ["raw"]}, "must not repeat"),
    ({"control_acc_low": 0.9, "control_acc_high": 0.5}, "must not exceed"),
    ({"n_unlabeled": 55000, "n_val": 10000}, "exceeds"),
    ({"seeds": 0}, "seeds"),
    ({"n_labeled": [500, 500]}, "repeats"),
    ({"control_noise": "gaussian"}, "control_noise"),
    ({"tempreature": 2.0}, "unknown parameter"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        wd.Config.resolve("cpu", bad)


# ---------------------------------------------------------------- the arms on toy data

def _toy(n_train=900, n_test=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n_train + n_test)
    x = (rng.integers(0, 80, (n_train + n_test, 8, 8)) + 50 * y[:, None, None]).astype(np.uint8)
    return D.LabeledData("toy", x, y.astype(np.int64), 4, n_train)


@pytest.fixture
def toy_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path))
    rt = setup(0, threads=1, quiet=True)
    cfg = wd.Config.resolve("smoke", {"n_labeled": [60], "n_val": 100, "n_unlabeled": 400,
                                      "n_test": 150, "teacher_arch": "mlp", "teacher_steps": 30,
                                      "student_steps": 30, "variants": ["bins"],
                                      "timing_repeats": 2, "timing_steps": 3, "bins": 4})
    data = _toy()
    return cfg, rt, data, wd.run(cfg, rt, data=data)


def test_run_gives_every_arm_on_every_seed(toy_run):
    cfg, rt, data, res = toy_run
    runs = res["runs"]
    assert set(runs.columns) >= {"seed", "n_labeled", "arm", "test_acc", "train_s", "weigh_s",
                                 "mean_weight", "seconds"}
    assert len(runs) == cfg.seeds * len(cfg.arms())
    assert runs.groupby("seed")["arm"].apply(list).map(sorted).map(tuple).nunique() == 1
    assert runs["test_acc"].between(0, 1).all()
    wd_rows = runs[runs.arm.str.contains("wd")]
    assert (wd_rows["mean_weight"] <= 1).all() and (wd_rows["mean_weight"] >= 0).all()
    assert (runs[runs.arm.str.startswith("kd")]["mean_weight"] == 1).all()
    assert len(res["teachers"]) == cfg.seeds and not res["teachers"]["teacher_from_cache"].any()
    # a second run shares the cached teachers
    again = wd.prepare(data, cfg, 60, 0, rt)
    assert again.teacher.from_cache
    measured = wd.measure(res)
    assert set(measured) == set(wd.CLAIMS)
    assert all(isinstance(m, Measurement) for m in measured.values())
    assert measured["wd-beats-kd-hard"].estimate.n == cfg.seeds


def test_same_arm_same_seed_is_deterministic(toy_run):
    cfg, rt, data, res = toy_run
    ctx = wd.prepare(data, cfg, 60, 1, rt)
    a = wd.run_arm("wd_hard", ctx, cfg, rt)["test_acc"]
    b = wd.run_arm("wd_hard", ctx, cfg, rt)["test_acc"]
    first = res["runs"].query("seed == 1 and arm == 'wd_hard'")["test_acc"].item()
    assert a == b == pytest.approx(first)
    with pytest.raises(ValueError, match="unknown arm"):
        wd.run_arm("xx_hard", ctx, cfg, rt)


def test_picture_and_calibration_tables(toy_run):
    cfg, rt, data, res = toy_run
    ctx = res["contexts"][60]
    pic = wd.weight_picture(ctx, cfg, bins=4)
    assert list(pic["curves"].columns) == ["margin", *wd.WEIGHTINGS]
    assert np.all(np.diff(pic["curves"]["raw"]) >= 0)
    assert pic["val_bins"]["n"].sum() == cfg.n_val
    assert pic["unlabeled_bins"]["n"].sum() == cfg.n_unlabeled
    assert pic["val_bins"]["oof_weight"].between(0, 1).all()
    err = wd.calibration_error(ctx, cfg, control=True)
    assert 0 <= err["brier_isotonic_oof"] <= 1 and 0 <= err["brier_constant"] <= 0.25


# ---------------------------------------------------------------- measure()

def _runs_with(diffs: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    base = {"labeled_only": 0.70, "kd_hard": 0.75, "kd_soft": 0.74, "control_kd_hard": 0.60,
            "control_kd_soft": 0.62}
    for seed in range(3):
        for arm, acc in base.items():
            rows.append({"seed": seed, "n_labeled": 100, "arm": arm, "test_acc": acc})
        for arm, ref in (("wd_hard", "kd_hard"), ("wd_soft", "kd_soft"),
                         ("control_wd_hard", "control_kd_hard"), ("control_wd_soft", "control_kd_soft")):
            rows.append({"seed": seed, "n_labeled": 100, "arm": arm,
                         "test_acc": base[ref] + diffs[arm][seed]})
    return pd.DataFrame(rows)


def _timing(wd_s, kd_s, quiet):
    busy = 0.0 if quiet else 0.9
    inter = bench.Interference(1.0, busy, 0.0, None, 1.0, 2)
    rows = []
    for rep, (a, b) in enumerate(zip(wd_s, kd_s)):
        rows += [{"arm": "kd_hard", "repeat": rep, "position": 0, "value": b, "quiet": quiet},
                 {"arm": "wd_hard", "repeat": rep, "position": 1, "value": a, "quiet": quiet}]
    return bench.BenchResult(["kd_hard", "wd_hard"], len(wd_s), rows, inter,
                             [inter] * len(wd_s), {})


def test_measure_hand_values():
    diffs = {"wd_hard": [0.01, 0.02, 0.03], "wd_soft": [0.0, 0.0, 0.0],
             "control_wd_hard": [0.05, 0.05, 0.05], "control_wd_soft": [-0.01, 0.0, 0.01]}
    teachers = pd.DataFrame({"seed": [0, 1, 2], "teacher_test_acc": [0.8, 0.8, 0.8]})
    res = {"runs": _runs_with(diffs), "teachers": teachers,
           "timing": _timing([1.1, 1.0, 1.05], [1.0, 1.0, 1.0], quiet=True)}
    m = wd.measure(res)
    assert m["distillation-beats-labeled-only"].estimate.mean == pytest.approx(0.05)
    assert "10.0 points" in m["distillation-beats-labeled-only"].note
    assert m["wd-beats-kd-hard"].estimate.mean == pytest.approx(0.02)
    assert m["wd-beats-kd-hard"].estimate.samples == pytest.approx((0.01, 0.02, 0.03))
    assert m["wd-beats-kd-soft-control"].estimate.mean == pytest.approx(0.0, abs=1e-12)
    assert m["wd-no-extra-time"].estimate.mean == pytest.approx(3.15 / 3.0)
    # t(2) half-width 4.303 * 0.01 / sqrt 3 = 0.0248 > 0.02: the CI reaches below 0
    assert wd.CLAIMS["wd-beats-kd-hard"].rule.decide(m["wd-beats-kd-hard"].estimate) == "partly"
    ctl = m["wd-beats-kd-hard-control"].estimate
    assert wd.CLAIMS["wd-beats-kd-hard-control"].rule.decide(ctl) == "reproduced"
    loaded = wd.timing_measurement(_timing([1.1, 1.0, 1.05], [1.0, 1.0, 1.0], quiet=False))
    assert loaded.estimate is None and loaded.note.startswith("withheld")


def test_per_seed_diff_averages_over_the_sweep():
    runs = pd.DataFrame([
        {"seed": 0, "n_labeled": 100, "arm": "a", "test_acc": 0.5},
        {"seed": 0, "n_labeled": 100, "arm": "b", "test_acc": 0.4},
        {"seed": 0, "n_labeled": 200, "arm": "a", "test_acc": 0.6},
        {"seed": 0, "n_labeled": 200, "arm": "b", "test_acc": 0.6},
        {"seed": 1, "n_labeled": 100, "arm": "a", "test_acc": 0.5},
        {"seed": 1, "n_labeled": 100, "arm": "b", "test_acc": 0.5},
        {"seed": 1, "n_labeled": 200, "arm": "a", "test_acc": 0.7},
        {"seed": 1, "n_labeled": 200, "arm": "b", "test_acc": 0.5}])
    assert wd._per_seed_diff(runs, "a", "b").tolist() == pytest.approx([0.05, 0.1])
    with pytest.raises(KeyError):
        wd._per_seed_diff(runs, "a", "c")


def test_paired_differences_by_hand():
    import pandas as pd
    arms = {"labeled_only": [0.5, 0.6], "kd_hard": [0.6, 0.8], "wd_hard": [0.7, 0.8],
            "kd_soft": [0.6, 0.6], "wd_soft": [0.6, 0.7], "control_kd_hard": [0.1, 0.2],
            "control_wd_hard": [0.3, 0.3], "control_kd_soft": [0.2, 0.2],
            "control_wd_soft": [0.2, 0.4], "oracle": [0.9, 0.9]}
    runs = pd.DataFrame([{"arm": a, "seed": s, "test_acc": v[s]} for a, v in arms.items()
                         for s in (0, 1)])
    d = wd.paired_differences(runs).set_index("comparison")
    assert d.loc["kd_hard - labeled_only", "mean"] == pytest.approx(0.15)
    assert d.loc["wd_hard - kd_hard", "mean"] == pytest.approx(0.05)
    assert d.loc["control_wd_hard - control_kd_hard", "mean"] == pytest.approx(0.15)
    assert list(d["n"]) == [2] * 6
