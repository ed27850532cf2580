import numpy as np
import pytest

from effdl_lib.chapters import active_distillation as ad


# ---------------------------------------------------------------- the game, by hand

def test_closed_form_hand_values():
    # g = (1, 1/2, 1/4): S = (1, 3, 7); (k - 1)/S_k = (0, 1/3, 2/7) -> k* = 2,
    # q = (1/1, 1/0.5)/3 = (1/3, 2/3): equal q_i g_i = 1/3, value 2/3 - 1/3 = 1/3.
    sol = ad.rad_closed_form([1.0, 0.5, 0.25], m=1, b=1)
    assert sol.k_star == 2
    np.testing.assert_allclose(sol.q, [1 / 3, 2 / 3, 0.0])
    assert sol.value == pytest.approx(1 / 3)
    assert ad.rad_value(sol.q, [1.0, 0.5, 0.25], 1) == pytest.approx(1 / 3)
    # m = 0: k/S_k is the harmonic mean of the top k, largest at k = 1 (the top gain)
    sol0 = ad.rad_closed_form([0.25, 1.0, 0.5], m=0, b=1)
    np.testing.assert_allclose(sol0.q, [0.0, 1.0, 0.0])
    # b scales the marginals; unordered input is handled
    sol2 = ad.rad_closed_form([0.25, 0.5, 1.0], m=1, b=2)
    np.testing.assert_allclose(sol2.q, [0.0, 4 / 3, 2 / 3])


def test_rad_value_hand():
    # v = q g = (0.5, 0.2, 0.3): m = 1 deletes 0.5, m = 2 deletes 0.5 + 0.3
    assert ad.rad_value([1, 1, 1], [0.5, 0.2, 0.3], 0) == pytest.approx(1.0)
    assert ad.rad_value([1, 1, 1], [0.5, 0.2, 0.3], 1) == pytest.approx(0.5)
    assert ad.rad_value([1, 1, 1], [0.5, 0.2, 0.3], 2) == pytest.approx(0.2)
    assert ad.rad_value([1, 1, 1], [0.5, 0.2, 0.3], 3) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_equals_uncapped_lp(seed):
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.05, 1.0, 30)
    m = int(rng.integers(0, 20))
    cf = ad.rad_closed_form(g, m, b=3)
    lp = ad.rad_lp(g, m, b=3, caps=False)
    assert cf.value == pytest.approx(lp.value, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_equals_lp_where_caps_do_not_bind(seed):
    rng = np.random.default_rng(100 + seed)
    n, b = 200, 5
    g = rng.uniform(0.3, 1.0, n)            # gains within a factor 3.3: caps stay slack
    m = int(rng.integers(20, 120))
    cf = ad.rad_closed_form(g, m, b)
    assert cf.q.max() < 1.0                 # the caps do not bind
    lp = ad.rad_lp(g, m, b)
    assert cf.value == pytest.approx(lp.value, rel=1e-7)
    np.testing.assert_allclose(cf.q, lp.q, atol=1e-6)   # distinct gains: unique optimum
    sel = ad.rad_marginals(g, m, b)
    assert sel.method == "closed form"
    np.testing.assert_allclose(sel.q, cf.q)


@pytest.mark.parametrize("b", [1, 3, 10])
def test_lp_and_capped_equal_greedy_top_b_at_m0(b):
    g = np.random.default_rng(7).uniform(0, 1, 40)
    top = np.sort(np.argsort(-g)[:b])
    lp = ad.rad_lp(g, 0, b)
    assert np.array_equal(np.flatnonzero(lp.q > 0.5), top)
    np.testing.assert_allclose(lp.q, (np.isin(np.arange(40), top)).astype(float), atol=1e-7)
    cap = ad.rad_marginals(g, 0, b)
    np.testing.assert_allclose(cap.q, lp.q, atol=1e-7)
    assert cap.k_star == b


@pytest.mark.parametrize("seed", range(12))
def test_capped_solution_matches_lp_when_caps_bind(seed):
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(5, 60))
    g = rng.uniform(0.001, 1.0, n) ** 2      # wide spread: small gains hit q_i = 1
    b = int(rng.integers(1, n + 1))
    m = int(rng.integers(0, n + 3))
    sol = ad.rad_marginals(g, m, b)
    lp = ad.rad_lp(g, m, b)
    assert sol.q.sum() == pytest.approx(b)
    assert sol.q.min() >= 0 and sol.q.max() <= 1 + 1e-12
    assert sol.value == pytest.approx(lp.value, rel=1e-6, abs=1e-9)


def test_zero_gains_get_only_leftover_budget():
    g = np.array([0.9, 0.0, 0.5, 0.0])
    sol = ad.rad_marginals(g, 0, 2)
    np.testing.assert_allclose(sol.q, [1, 0, 1, 0], atol=1e-12)
    sol = ad.rad_marginals(g, 0, 3)              # only two points are worth anything
    assert sol.q.sum() == pytest.approx(3) and sol.q[[0, 2]] == pytest.approx([1, 1])


# ---------------------------------------------------------------- DepRound

def test_depround_exact_count_and_marginals():
    q = np.array([0.9, 0.05, 0.5, 0.35, 0.2, 1.0, 0.0, 0.6, 0.4])   # sums to 4
    rng = np.random.default_rng(2024)
    counts = np.zeros(q.size)
    draws = 20_000
    for _ in range(draws):
        idx = ad.depround(q, rng)
        assert idx.size == 4 and np.unique(idx).size == 4
        counts[idx] += 1
    assert np.abs(counts / draws - q).max() < 0.01


def test_depround_on_rad_marginals_of_a_pool():
    g = np.random.default_rng(3).uniform(0.01, 1, 500)
    sol = ad.rad_marginals(g, 100, 20)
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = ad.depround(sol.q, rng)
        assert idx.size == 20 and np.unique(idx).size == 20
        assert np.all(sol.q[idx] > 0)


def test_depround_rejects_bad_marginals():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="integer budget"):
        ad.depround([0.5, 0.7], rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ad.depround([1.5, 0.5], rng)
    with pytest.raises(ValueError, match="finite"):
        ad.depround([np.nan, 1.0], rng)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("b, match", [(0, "positive"), (-2, "positive"), (11, "exceeds"),
                                      (2.5, "integer"), (True, "integer")])
def test_bad_budgets(b, match):
    g = np.linspace(0.1, 1, 10)
    probs = np.full((10, 3), 1 / 3)
    with pytest.raises(ValueError, match=match):
        ad.rad_marginals(g, 1, b)
    with pytest.raises(ValueError, match=match):
        ad.select("margin", probs, b, np.random.default_rng(0))
    if match != "exceeds":
        with pytest.raises(ValueError):
            ad.rad_closed_form(g, 1, b)


def test_negative_or_nan_gains_and_bad_m():
    with pytest.raises(ValueError, match="negative"):
        ad.rad_marginals([0.5, -0.1, 0.2], 0, 1)
    with pytest.raises(ValueError, match="finite"):
        ad.rad_lp([0.5, np.nan], 0, 1)
    with pytest.raises(ValueError, match="m "):
        ad.rad_marginals([0.5, 0.2], -1, 1)
    with pytest.raises(ValueError, match="delete all"):
        ad.rad_closed_form([0.5, 0.2, 0.0], 2, 1)


def test_gains_left_unchanged():
    g = np.array([0.3, 0.1, 0.7])
    keep = g.copy()
    ad.rad_marginals(g, 1, 2)
    ad.rad_lp(g, 1, 2)
    assert np.array_equal(g, keep)


# ---------------------------------------------------------------- the rules

def _probs():
    # margins: 0.1, 0.8, 0.0, 0.5 -> informativeness 0.9, 0.2, 1.0, 0.5
    return np.array([[0.5, 0.4, 0.1], [0.9, 0.1, 0.0], [0.45, 0.45, 0.1], [0.7, 0.2, 0.1]])


def test_scores_by_hand():
    p = _probs()
    np.testing.assert_allclose(ad.margin(p), [0.1, 0.8, 0.0, 0.5])
    np.testing.assert_allclose(ad.least_confidence(p), [0.5, 0.1, 0.55, 0.3])
    h = -(0.5 * np.log(0.5) + 0.4 * np.log(0.4) + 0.1 * np.log(0.1))
    assert ad.entropy(p)[0] == pytest.approx(h)
    assert ad.entropy(p)[1] == pytest.approx(-(0.9 * np.log(0.9) + 0.1 * np.log(0.1)))


def test_select_rules():
    p, rng = _probs(), np.random.default_rng(0)
    assert list(ad.select("margin", p, 2, rng).indices) == [0, 2]
    assert list(ad.select("least_confidence", p, 1, rng).indices) == [2]
    assert list(ad.select("entropy", p, 1, rng).indices) == [2]   # 0.949 vs 0.943
    r = ad.select("random", p, 3, rng)
    assert r.indices.size == 3 and np.unique(r.indices).size == 3 and r.k_star == 4
    rad0 = ad.select("rad", p, 2, rng, m=0)           # m = 0: greedy margin
    assert list(rad0.indices) == [0, 2] and rad0.k_star == 2
    rad = ad.select("rad", p, 2, rng, m=2)
    assert rad.indices.size == 2 and rad.m == 2 and rad.k_star >= 3
    with pytest.raises(ValueError, match="unknown selection rule"):
        ad.select("coreset", p, 1, rng)
    with pytest.raises(ValueError, match="probabilities"):
        ad.select("margin", p * 2, 1, rng)


def test_rad_moves_from_margin_to_spread_as_m_grows():
    g = np.random.default_rng(5).uniform(0.01, 1, 2000)
    ks = [ad.rad_marginals(g, m, 20).k_star for m in (0, 10, 100, 1000, 1900)]
    assert ks[0] == 20 and all(a <= b for a, b in zip(ks, ks[1:])) and ks[-1] > 1900


def test_estimate_m():
    assert ad.estimate_m([True] * 9 + [False], 1000) == 100
    assert ad.estimate_m([True] * 4, 50) == 0
    with pytest.raises(ValueError):
        ad.estimate_m([], 10)


# ---------------------------------------------------------------- the loop's pieces

def test_teacher_oracle_counts_and_refuses_repeats():
    import torch
    oracle = ad.TeacherOracle(torch.arange(12.0).view(6, 2))
    out = oracle.query([4, 1])
    assert out.tolist() == [[8.0, 9.0], [2.0, 3.0]] and oracle.queries == 2
    with pytest.raises(ValueError, match="once"):
        oracle.query([1, 2])
    with pytest.raises(ValueError, match="once"):
        oracle.query([3, 3])
    with pytest.raises(ValueError, match="lie in"):
        oracle.query([6])
    assert oracle.queries == 2 and list(np.flatnonzero(oracle.asked)) == [1, 4]  # nothing charged


def _seed_table():
    import pandas as pd
    rows = []
    # seed 0: random (0.4, 0.8), margin (0.9, 0.4), rad (0.5, 0.75): line at 0.5 = 0.72
    # seed 1: random (0.3, 0.7), margin (0.8, 0.5), rad (0.55, 0.55): line at 0.55 = 0.60
    for seed, vals in ((0, {"random": (0.4, 0.8, 0.70), "margin": (0.9, 0.4, 0.72),
                            "rad": (0.5, 0.75, 0.73)}),
                       (1, {"random": (0.3, 0.7, 0.69), "margin": (0.8, 0.5, 0.71),
                            "rad": (0.55, 0.55, 0.70)})):
        for rule, (inf, acc, final) in vals.items():
            rows.append({"seed": seed, "setting": "weak", "rule": rule, "informativeness": inf,
                         "teacher_acc_queried": acc, "final_test_acc": final})
    return pd.DataFrame(rows)


def test_tradeoff_gap_and_diffs_by_hand():
    t = _seed_table()
    np.testing.assert_allclose(ad.tradeoff_gap(t, "weak"), [0.75 - 0.72, 0.55 - 0.60])
    np.testing.assert_allclose(ad._diff(t, "weak", "rad", "margin", "final_test_acc"), [0.01, -0.01])
    with pytest.raises(KeyError):
        ad._diff(t, "weak", "rad", "entropy", "final_test_acc")


def test_per_seed_aggregates_rounds():
    import pandas as pd
    rows = [{"seed": 0, "setting": "weak", "rule": "rad", "round": 0, "queries": 0, "test_acc": 0.5}]
    for r, (acc, tacc, inf) in enumerate([(0.6, 0.4, 0.9), (0.7, 0.6, 0.7)], start=1):
        rows.append({"seed": 0, "setting": "weak", "rule": "rad", "round": r, "queries": 10 * r,
                     "test_acc": acc, "teacher_acc_queried": tacc, "informativeness": inf,
                     "k_star": 100 * r, "m": 5, "pool": 100 - 10 * r, "select_s": 0.01})
    s = ad.per_seed(pd.DataFrame(rows)).iloc[0]
    assert s.final_test_acc == pytest.approx(0.7)
    assert s.teacher_acc_queried == pytest.approx(0.5) and s.informativeness == pytest.approx(0.8)
    assert s.k_star == pytest.approx(150)


def test_config_profiles_and_cross_checks():
    from effdl_lib.chapter import check_chapter
    from effdl_lib.config import ConfigError
    assert check_chapter(ad) == []
    with pytest.raises(ConfigError, match="exceed the pool"):
        ad.Config.resolve("cpu", {"rounds": 50, "budget": 1000})
    with pytest.raises(ConfigError, match="weak_labels"):
        ad.Config.resolve("cpu", {"weak_labels": 20})
    with pytest.raises(ConfigError, match="one of"):
        ad.Config.resolve("cpu", {"rules": ["margin", "coreset"]})
    with pytest.raises(ConfigError, match="without repeats"):
        ad.Config.resolve("cpu", {"rules": ["margin", "margin"]})


def test_the_papers_claims_are_tested_strictly_and_relaxations_are_ours():
    for c in ad.CLAIMS.values():
        if c.origin.kind == "paper" and c.paper_value and "ahead" in c.paper_value:
            assert c.rule.threshold == 0.0 and c.rule.direction == "above", c.id
        if getattr(c.rule, "threshold", 0.0) == ad.NON_INFERIORITY:
            assert c.origin.kind == "ours", c.id


def test_active_loop_on_a_tiny_synthetic_pool(tmp_path, monkeypatch):
    import dataclasses
    from effdl_lib import runtime
    from effdl_lib.toolkits import distill as D
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    n_train, n = 400, 520
    y = rng.integers(0, 10, n)
    x = (rng.integers(0, 60, (n, 28, 28)) + 19 * y[:, None, None]).astype(np.uint8)  # learnable
    data = D.LabeledData("synthetic", x, y.astype(np.int64), 10, n_train)
    cfg = dataclasses.replace(ad.Config.resolve("smoke"), n_labeled=20, n_val=50, n_pool=200,
                              n_test=100, rounds=2, budget=20, init_steps=5, round_steps=5,
                              weak_labels=30, weak_steps=5, strong_labels=40, strong_width=8,
                              strong_steps=5).checked()
    rt = runtime.setup(0, 1, quiet=True)
    ctx = ad.prepare(data, cfg, 0, rt)
    assert set(ctx.teachers) == {"weak", "strong"} and len(ctx.y_pool) == 200
    for rule in ("rad", "margin", "random"):
        rows = ad.active_loop(ctx, "weak", rule, cfg, rt)
        assert [r["queries"] for r in rows] == [0, 20, 40]
        assert [r["pool"] for r in rows[1:]] == [200, 180]
        assert all(0 <= r["teacher_acc_queried"] <= 1 for r in rows[1:])
        if rule == "rad":
            m_rate = ad.teacher_val_error(ctx, "weak")
            assert rows[1]["m"] == round(m_rate * 200) and rows[2]["m"] == round(m_rate * 180)
        else:
            assert all(r["m"] == 0 for r in rows[1:])
    with pytest.raises(ValueError, match="unknown selection rule"):
        ad.active_loop(ctx, "weak", "coreset", cfg, rt)
    sweep = ad.m_sweep(ctx, cfg, rt, fractions=(0.0, 0.5)).set_index("rule")
    rad0 = sweep[sweep.m_fraction == 0.0].iloc[0]
    assert rad0.overlap_margin == pytest.approx(1.0)            # m = 0: greedy margin
    assert rad0.informativeness == pytest.approx(sweep.loc["margin", "informativeness"])
    assert sweep.loc["random", "overlap_margin"] == pytest.approx(20 / 200)
    assert sweep.loc["random", "k_star_fraction"] == 1.0
    for s in ("weak", "strong"):                                # expected accuracy of random
        assert sweep.loc["random", f"teacher_acc_{s}"] == pytest.approx(ctx.teachers[s].accuracy["unlabeled"])
