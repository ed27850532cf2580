import numpy as np
import pytest

from effdl_lib.stats import bootstrap_ratio, mean_ci, paired_diff, summarize


def test_mean_ci_hand_computed():
    # mean 2, sd 1, n 3: half-width = t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051
    est = mean_ci([1.0, 2.0, 3.0])
    assert est.mean == pytest.approx(2.0)
    assert est.ci_high - est.mean == pytest.approx(2.484138, rel=1e-5)
    assert est.ci_low == pytest.approx(2.0 - 2.484138, rel=1e-5)
    assert est.n == 3


def test_mean_ci_single_value_has_no_width():
    est = mean_ci([0.7])
    assert (est.mean, est.ci_low, est.ci_high, est.n) == (0.7, 0.7, 0.7, 1)
    assert "no CI" in est.fmt()


def test_mean_ci_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([1.0, float("nan")])


def test_paired_diff_removes_shared_seed_effect():
    a = np.array([0.50, 0.70, 0.90])
    b = a - 0.10  # a constant 0.1 advantage on every seed: zero-width interval
    est = paired_diff(a, b)
    assert est.mean == pytest.approx(0.1)
    assert est.ci_high - est.ci_low == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        paired_diff([1, 2], [1, 2, 3])


def test_bootstrap_ratio_point_and_bounds():
    num, den = np.array([20.0, 22.0, 18.0, 20.0]), np.array([1.0, 1.1, 0.9, 1.0])
    est = bootstrap_ratio(num, den, n_boot=2000)
    assert est.mean == pytest.approx(20.0)
    assert est.ci_low <= 20.0 <= est.ci_high
    assert est.ci_low > 19.0 and est.ci_high < 21.0  # paired: ratios per index are all 20
    with pytest.raises(ValueError):
        bootstrap_ratio([1.0], [0.0])


def test_summarize_groups():
    import pandas as pd
    df = pd.DataFrame({"arm": ["a", "a", "b", "b"], "acc": [1.0, 3.0, 5.0, 5.0]})
    out = summarize(df, "arm", "acc").set_index("arm")
    assert out.loc["a", "mean"] == 2.0 and out.loc["b", "ci_low"] == 5.0 and out.loc["a", "n"] == 2


def test_bootstrap_ratio_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ratio([1.0, float("nan")], [1.0, 1.0])


def test_paired_values_aligns_by_seed():
    import pandas as pd
    from effdl_lib.stats import paired_values
    df = pd.DataFrame({"arm": ["a", "b", "b", "a"], "seed": [1, 0, 1, 0], "acc": [0.3, 0.2, 0.4, 0.1]})
    a, b = paired_values(df, "arm", "a", "b", "acc")
    assert list(a) == [0.1, 0.3] and list(b) == [0.2, 0.4]


def test_bootstrap_ratio_unpaired_branch_is_wider_than_paired():
    # Paired samples move together (ratio exactly 2 per index); unpaired resampling mixes
    # indices, so its interval must be wide while the paired one is a point.
    den = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    num = 2 * den
    paired = bootstrap_ratio(num, den, n_boot=4000, paired=True)
    unpaired = bootstrap_ratio(num, den, n_boot=4000, paired=False)
    assert paired.mean == unpaired.mean == pytest.approx(2.0)
    assert paired.ci_high - paired.ci_low == pytest.approx(0.0, abs=1e-12)
    assert unpaired.ci_high - unpaired.ci_low > 0.5
    # different lengths are resampled independently whatever `paired` says
    short = bootstrap_ratio(num[:3], den, n_boot=2000, paired=True)
    assert short.n == 3 and short.ci_high > short.ci_low


def test_estimates_keep_samples_and_recompute_exactly():
    from effdl_lib.stats import point, recompute
    for est in (mean_ci([0.1, 0.3, 0.2]), paired_diff([0.5, 0.6], [0.4, 0.3]),
                bootstrap_ratio([2.0, 2.2, 1.9], [1.0, 1.0, 1.1], n_boot=500, paired=False),
                point(0.984), mean_ci([0.7])):
        stored = est.as_dict()
        again = recompute(stored)
        assert (again.mean, again.ci_low, again.ci_high, again.n) == (est.mean, est.ci_low, est.ci_high, est.n)
    assert mean_ci([1.0, 2.0]).as_dict()["samples"] == [1.0, 2.0]
    assert paired_diff([3.0, 5.0], [1.0, 1.0]).as_dict()["samples"] == [2.0, 4.0]
    with pytest.raises(ValueError, match="no samples kept"):
        recompute({"mean": 1.0, "ci_low": 0.0, "ci_high": 2.0, "n": 3})
    with pytest.raises(ValueError, match="finite"):
        point(float("inf"))
