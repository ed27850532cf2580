import numpy as np
import pytest
import torch

import pandas as pd
from scipy import stats

from effdl_lib.chapters import ood_distillation as ood
from effdl_lib.claims import Measurement
from effdl_lib.config import ConfigError
from conftest import needs_data


@pytest.mark.parametrize("source", ["noise", "shuffled_mnist", "mnist"])
def test_synthetic_transfer_sets_shape_and_range(source):
    pool = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    out = ood.transfer_set(source, 20, np.random.default_rng(1), pool)
    assert out.shape == (20, 28, 28) and out.dtype == np.uint8
    x = ood.to_tensor(out)
    assert x.shape == (20, 1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_shuffled_mnist_keeps_pixel_histogram():
    pool = np.random.default_rng(0).integers(0, 256, (1, 28, 28), dtype=np.uint8)
    out = ood.transfer_set("shuffled_mnist", 1, np.random.default_rng(1), pool)
    assert np.array_equal(np.sort(out.ravel()), np.sort(pool.ravel()))
    assert not np.array_equal(out, pool)


def test_unknown_source_and_bad_sizes():
    with pytest.raises(ValueError, match="unknown transfer source"):
        ood.transfer_set("imagenet", 3, np.random.default_rng(0), np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError):
        ood.transfer_set("noise", 0, np.random.default_rng(0), np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError):
        ood.to_tensor(np.zeros((2, 32, 32), np.uint8))


@needs_data
@pytest.mark.parametrize("source", ["fashion", "notmnist", "cifar_patches"])
def test_real_transfer_sets(source):
    pool = np.zeros((5, 28, 28), np.uint8)
    out = ood.transfer_set(source, 64, np.random.default_rng(0), pool)
    assert out.shape == (64, 28, 28) and out.dtype == np.uint8
    assert out.std() > 10  # real images, not blanks


def test_k_shot_picks_k_per_class():
    y = np.repeat(np.arange(10), 7)
    idx = ood.k_shot(y, 5, np.random.default_rng(0))
    assert len(set(idx)) == 50
    assert np.array_equal(np.bincount(y[idx]), np.full(10, 5))
    with pytest.raises(ValueError, match="fewer than k=8"):
        ood.k_shot(y, 8, np.random.default_rng(0))


def test_argmax_histogram_and_balancing():
    logits = torch.zeros(100, 10)
    logits[:90, 3] = 1.0
    logits[90:, 7] = 1.0
    hist = ood.argmax_histogram(logits)
    assert hist[3] == pytest.approx(0.9) and hist[7] == pytest.approx(0.1) and hist.sum() == pytest.approx(1)
    idx = ood.balance_by_teacher(logits, np.random.default_rng(0))
    share7 = float((logits[idx].argmax(1) == 7).float().mean())
    assert 0.4 < share7 < 0.6


def test_models_shapes_and_parameter_counts():
    x = torch.rand(3, 1, 28, 28)
    assert ood.teacher_cnn()(x).shape == (3, 10)
    assert ood.student_mlp(32)(x).shape == (3, 10)
    assert ood.n_params(ood.teacher_cnn()) == ood.TEACHER_PARAMS == 105_866
    for h in (1, 32, 64, 300):
        assert ood.student_params(h) == ood.n_params(ood.student_mlp(h))


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_profile_student_is_at_most_half_the_teacher(profile):
    cfg = ood.Config.resolve(profile)
    share = ood.n_params(ood.student_mlp(cfg.student_hidden)) / ood.n_params(ood.teacher_cnn())
    assert share <= ood.MAX_STUDENT_SHARE


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_profile_resamples_each_pool(profile):
    """transfer_size stays below every source pool, so seeds draw different sets."""
    cfg = ood.Config.resolve(profile)
    pools = [ood.POOL_SIZES[s] for s in cfg.sources if s in ood.POOL_SIZES]
    assert cfg.transfer_size <= ood.MAX_POOL_SHARE * min(pools + [60000 - cfg.val_size])


@pytest.mark.parametrize("override, match", [
    ({"student_hidden": 128}, "teacher's parameters"),
    ({"transfer_size": 9000}, "transfer_size must be at most 5400"),
    ({"transfer_sizes": [500, 6000]}, "must not exceed transfer_size"),
    ({"sources": ["fashion", "fashion", "mnist"]}, "must not repeat"),
    ({"sources": ["fashion", "noise"]}, "must include 'mnist'"),
    ({"sources": ["imagenet", "mnist"]}, "one of"),
    ({"teacher_train": 58000}, "at most 55000"),
    ({"temperatures": [0.0]}, "temperatures"),
    ({"k_shots": []}, "k_shots"),
])
def test_config_rejects_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        ood.Config.resolve("cpu", override)
    # dropping notMNIST (the smallest pool) lifts the transfer-size cap to 60% of fashion
    # and the MNIST pool
    ood.Config.resolve("cpu", {"transfer_size": 9000, "transfer_sizes": [9000],
                              "sources": ["fashion", "cifar_patches", "mnist"]})


def test_sample_is_without_replacement_and_differs_by_seed():
    pool = np.arange(100, dtype=np.uint8).reshape(100, 1, 1).repeat(28, 1).repeat(28, 2)
    a = ood._sample(pool, 60, np.random.default_rng(0))
    b = ood._sample(pool, 60, np.random.default_rng(1))
    assert len(np.unique(a[:, 0, 0])) == 60
    assert set(a[:, 0, 0]) != set(b[:, 0, 0])
    with pytest.raises(ValueError, match="cannot draw 101 distinct"):
        ood._sample(pool, 101, np.random.default_rng(0))


def test_agreement_hand_values():
    t = torch.eye(10)[[3, 3, 3, 3, 7, 7]]           # teacher: four 3s, two 7s
    s = torch.eye(10)[[3, 3, 3, 3, 3, 7]]           # student: one 7 mislabelled as 3
    assert ood.agreement(s, t) == pytest.approx(5 / 6)
    assert ood.balanced_agreement(s, t) == pytest.approx((1.0 + 0.5) / 2)
    const = torch.eye(10)[[3] * 6]                  # a student that always says 3
    assert ood.agreement(const, t) == pytest.approx(4 / 6)
    assert ood.balanced_agreement(const, t) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        ood.agreement(s[:5], t)
    with pytest.raises(ValueError, match="shapes differ"):
        ood.balanced_agreement(s, t[:, :5])


def test_selection_uses_the_label_free_score_by_default():
    sel = pd.DataFrame({
        "arm": ["fashion"] * 2 + ["notmnist"] * 2 + ["noise"] * 2,
        "temperature": [1.0, 4.0] * 3,
        "select_agree": [0.30, 0.40, 0.50, 0.20, 0.10, 0.15],
        "val_acc": [0.60, 0.50, 0.40, 0.45, 0.20, 0.10]})
    temps = ood.best_temperatures(sel)
    assert temps == {"fashion": 4.0, "notmnist": 1.0, "noise": 4.0}
    assert ood.best_source(sel, temps, ood.OOD_SOURCES) == "notmnist"
    assert ood.best_source(sel, temps, ood.STRUCTURE_FREE) == "noise"
    lab = ood.best_temperatures(sel, by="val_acc")
    assert lab == {"fashion": 1.0, "notmnist": 4.0, "noise": 1.0}
    assert ood.best_source(sel, lab, ood.OOD_SOURCES, by="val_acc") == "fashion"
    assert ood.best_source(sel, temps, ("cifar_patches",)) is None


def _fake_results(seeds=3):
    """A Results whose every claim has a hand-computable estimate."""
    cfg = ood.Config.resolve("smoke", {"seeds": seeds, "k_shots": [1, 10],
                                       "transfer_sizes": [250, 1000]})
    rows = []
    base = {"fashion": 0.5, "notmnist": 0.4, "cifar_patches": 0.3, "noise": 0.2,
            "shuffled_mnist": 0.25, "mnist": 0.9}
    for seed in range(seeds):
        for src, acc in base.items():
            rows.append({"seed": seed, "arm": src, "test_acc": acc + 0.01 * seed,
                         "agree_teacher": acc, "agree_own": acc, "temperature": 2.0})
        for src in ood.OOD_SOURCES:
            rows.append({"seed": seed, "arm": ood.control_arm(src), "test_acc": 0.1,
                         "agree_teacher": 0.1, "agree_own": 0.7, "temperature": 2.0})
    tuned = []
    for seed in range(seeds):
        for steps, k, start, acc in [
                (40, 1, "blind", 0.6), (40, 1, "scratch", 0.4), (40, 1, "control", 0.45),
                (40, 1, "noise", 0.5), (40, 10, "blind", 0.8), (40, 10, "scratch", 0.75),
                (80, 10, "blind", 0.82), (80, 10, "scratch", 0.81)]:
            tuned.append({"seed": seed, "k": k, "start": start, "steps": steps,
                          "test_acc": acc + (0.02 * seed if start == "blind" else 0.0)})
    sizes = [{"seed": s, "arm": "fashion", "size": n, "test_acc": a + 0.01 * s * (n > 500)}
             for s in range(seeds) for n, a in [(250, 0.40), (1000, 0.50)]]
    return ood.Results(cfg, 0.98, 0.1, pd.DataFrame(), {}, "fashion", "noise",
                       pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame(sizes),
                       pd.DataFrame(tuned))


def test_measure_returns_every_claim_with_hand_values():
    m = ood.measure(_fake_results())
    assert list(m) == list(ood.CLAIMS)
    assert all(isinstance(v, Measurement) for v in m.values())
    assert m["beats-control-fashion"].estimate.mean == pytest.approx(0.41)   # 0.5+0.01s-0.1
    assert m["beats-control-cifar_patches"].estimate.mean == pytest.approx(0.21)
    assert m["structured-beats-unstructured"].estimate.mean == pytest.approx(0.3)
    assert m["structured-beats-unstructured"].estimate.ci_low == pytest.approx(0.3)
    assert m["finetune-beats-scratch-k1"].estimate.mean == pytest.approx(0.22)  # .2 + .02 mean
    assert m["finetune-beats-control-k1"].estimate.mean == pytest.approx(0.17)
    assert m["finetune-beats-noise-k1"].estimate.mean == pytest.approx(0.12)
    # advantage 0.2+0.02s at k=1 and 0.05+0.02s at k=10 (40 steps, not the 80-step check)
    assert m["advantage-shrinks"].estimate.mean == pytest.approx(0.15)
    assert "80 steps the advantage at k=10 is +0.0300" in m["advantage-shrinks"].note
    assert m["more-transfer-data-helps"].estimate.mean == pytest.approx(0.11)
    assert m["more-transfer-data-helps"].estimate.n == 3
    # a per-seed sample: the t-interval around 0.1 + 0.01 s for s = 0, 1, 2
    est = m["more-transfer-data-helps"].estimate
    half = stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
    assert (est.ci_low, est.ci_high) == pytest.approx((0.11 - half, 0.11 + half))


def test_measure_without_a_source_or_k1_is_not_testable():
    r = _fake_results()
    r.cfg = ood.Config.resolve("smoke", {"sources": ["fashion", "mnist"], "k_shots": [5, 10]})
    r.tuned = r.tuned.assign(k=r.tuned.k.replace({1: 5}))
    r.best_free = None
    m = ood.measure(r)
    assert m["beats-control-notmnist"].estimate is None
    assert "not among" in m["beats-control-notmnist"].note
    assert m["structured-beats-unstructured"].estimate is None
    for cid in ("finetune-beats-scratch-k1", "finetune-beats-control-k1",
                "finetune-beats-noise-k1"):
        assert m[cid].estimate is None
    assert m["advantage-shrinks"].estimate is not None


def test_blind_summary_and_control_table_hand_values():
    r = _fake_results()
    b = ood.blind_summary(r.blind)
    assert list(b.index[:2]) == ["mnist", "fashion"]          # sorted by mean accuracy
    assert b.loc["fashion", "mean"] == pytest.approx(0.51)
    assert b.loc["control:notmnist", "agree_own"] == pytest.approx(0.7)
    assert b.loc["control:notmnist", "ci_low"] == pytest.approx(0.1)   # no spread
    c = ood.control_table(r.blind)
    assert list(c.index) == list(ood.OOD_SOURCES)
    assert c.loc["notmnist", "difference"] == pytest.approx(0.31)
    assert c.loc["notmnist", "random teacher"] == pytest.approx(0.1)


def test_advantage_table_pairs_by_seed():
    tab = ood.advantage_table(_fake_results().tuned).set_index(["steps", "k"])
    assert tab.loc[(40, 1), "mean"] == pytest.approx(0.22)
    assert tab.loc[(80, 10), "mean"] == pytest.approx(0.03)
    assert (80, 1) not in tab.index


def test_claims_have_origins_and_the_paper_is_not_credited_with_our_hypotheses():
    kinds = {cid: c.origin.kind for cid, c in ood.CLAIMS.items()}
    assert kinds["structured-beats-unstructured"] == "related"
    assert kinds["finetune-beats-scratch-k1"] == "paper"
    for cid in ("finetune-beats-control-k1", "finetune-beats-noise-k1", "advantage-shrinks",
                "more-transfer-data-helps"):
        assert kinds[cid] == "ours"
    assert all("abstract" not in c.origin.where for cid, c in ood.CLAIMS.items()
               if not cid.startswith("beats-control"))


def test_train_returns_the_loss_curve_as_floats():
    from effdl_lib.runtime import setup
    from effdl_lib.training import train
    rt = setup(0, threads=1, quiet=True)
    model = torch.nn.Linear(3, 2)
    losses = train(model, torch.randn(20, 3), torch.randint(0, 2, (20,)),
                   torch.nn.functional.cross_entropy, steps=7, batch_size=8, lr=0.01, rt=rt)
    assert len(losses) == 7 and all(type(v) is float for v in losses)


def test_blind_student_learns_from_a_teacher():
    """A student distilled on noise from a fixed linear teacher agrees with it on new noise."""
    from effdl_lib.runtime import setup
    rt = setup(0, threads=1, quiet=True)
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    cfg = ood.Config.resolve("smoke", {"student_steps": 150, "student_hidden": 32})
    x = torch.rand(512, 1, 28, 28)
    ts = ood.TransferSet("noise", x, ood.predict_logits(teacher, x, rt))
    student = ood.blind_student(ts, 1.0, cfg, 0, rt)
    fresh = torch.rand(256, 1, 28, 28)
    agree = float((student(fresh).argmax(1) == teacher(fresh).argmax(1)).float().mean())
    assert agree > 0.5  # chance is about 0.1


@needs_data
def test_notmnist_held_out_part_is_disjoint_from_the_pool():
    from effdl_lib import data
    full = data.load_image_set("notmnist", "test")[0]
    pool, held = ood._notmnist("pool"), ood._notmnist("held_out")
    assert len(pool) == ood.POOL_SIZES["notmnist"] and len(held) == ood.NOTMNIST_HELD_OUT
    both = np.concatenate([pool, held])
    assert np.array_equal(np.sort(both.reshape(len(both), -1), axis=0),
                          np.sort(full.reshape(len(full), -1), axis=0))
    sel = ood.held_out_ood(50)
    assert sel.shape == (200, 28, 28) and sel.dtype == np.uint8


@needs_data
def test_tiny_run_pairs_controls_and_seeds():
    """End to end on a tiny config: every OOD source has its control at the same
    temperature and seeds, the transfer images differ by seed but not by teacher."""
    from effdl_lib.runtime import setup
    rt = setup(0, threads=1, quiet=True)
    cfg = ood.Config.resolve("smoke", {
        "seeds": 2, "teacher_train": 300, "teacher_steps": 3, "transfer_size": 64,
        "transfer_sizes": [32, 64], "select_per_source": 20, "student_steps": 3,
        "temperatures": [1.0, 2.0], "k_shots": [1, 2], "finetune_steps": 2,
        "finetune_steps_check": 4})
    splits = ood.mnist_splits(cfg.val_size)
    x0 = ood.draw_transfer("notmnist", splits, cfg, 0, rt)
    assert torch.equal(x0, ood.draw_transfer("notmnist", splits, cfg, 0, rt))
    assert not torch.equal(x0, ood.draw_transfer("notmnist", splits, cfg, 1, rt))
    r = ood.run(cfg, rt, splits)
    b = r.blind.set_index(["arm", "seed"])
    for src in ood.OOD_SOURCES:
        ctl = ood.control_arm(src)
        assert (b.loc[ctl, "temperature"] == b.loc[src, "temperature"]).all()
        assert set(b.loc[ctl].index) == set(b.loc[src].index) == {0, 1}
        assert (b.loc[ctl, "teacher"] == "random").all()
    assert r.best_ood in ood.OOD_SOURCES and r.best_free in ood.STRUCTURE_FREE
    assert set(r.tuned.start) == {"blind", "control", "noise", "scratch"}
    assert set(r.tuned.k) == {0, 1, 2}
    k0 = r.tuned[(r.tuned.k == 0)].set_index(["start", "seed", "steps"])["test_acc"]
    for seed in (0, 1):   # k = 0 is the blind student itself
        assert k0["blind", seed, 2] == pytest.approx(b.loc[(r.best_ood, seed), "test_acc"])
        assert k0["scratch", seed, 2] == k0["scratch", seed, 4]
    assert set(r.sizes["size"]) == {32, 64}
    assert set(ood.measure(r)) == set(ood.CLAIMS)
    import json
    values = ood.prose_values(r)
    assert values["best_ood"] == r.best_ood and 0 <= values["best_ood_acc"] <= 1
    json.dumps(ood.record_summary(r))   # plain JSON types only


@needs_data
def test_blind_phase_gives_the_same_numbers_in_process_and_on_two_workers():
    """The seed loop through the grid runner: two Dask worker processes give the same
    table, histograms and student weights as the in-process loop, bit for bit (each job
    seeds its own students, one thread each)."""
    from effdl_lib.runtime import setup
    rt = setup(0, threads=1, quiet=True)
    cfg = ood.Config.resolve("smoke", {
        "seeds": 2, "transfer_size": 64, "transfer_sizes": [32, 64], "student_steps": 3,
        "sources": ["notmnist", "noise", "mnist"]})
    splits = ood.mnist_splits(cfg.val_size)
    tensors = ood.Tensors.of(splits, ood.held_out_ood(10), rt)
    torch.manual_seed(0)
    teacher, control = ood.teacher_cnn().eval(), ood.random_teacher()
    temps = {s: 2.0 for s in cfg.sources}
    one = ood.run_blind(teacher, control, splits, tensors, cfg, temps, rt, workers=1)
    two = ood.run_blind(teacher, control, splits, tensors, cfg, temps, rt, workers=2)
    pd.testing.assert_frame_equal(one[0], two[0])
    pd.testing.assert_frame_equal(one[2], two[2])
    pd.testing.assert_frame_equal(one[3], two[3])
    assert list(one[0]["arm"]) == ["notmnist", "control:notmnist", "noise", "mnist"] * 2
    assert set(one[1]) == set(two[1]) == {(a, s) for a in one[0]["arm"] for s in (0, 1)}
    for k, student in one[1].items():
        for (name, w1), w2 in zip(student.state_dict().items(), two[1][k].state_dict().values()):
            assert torch.equal(w1, w2), (k, name)


def test_chapter_workers_reads_the_environment(monkeypatch):
    from effdl_lib.toolkits import grid
    monkeypatch.setenv(grid.WORKERS_ENV, "3")
    assert grid.chapter_workers() == 3 and grid.chapter_workers("cuda") == 1
    monkeypatch.delenv(grid.WORKERS_ENV)
    assert grid.chapter_workers() == max(1, __import__("os").cpu_count() or 1)
    monkeypatch.setenv(grid.WORKERS_ENV, "two")
    with pytest.raises(ValueError, match="EFFDL_WORKERS must be a positive integer"):
        grid.chapter_workers()
    monkeypatch.delenv(grid.MODE_ENV, raising=False)
    monkeypatch.delenv(grid.SCHEDULER_ENV, raising=False)
    assert grid.chapter_mode(1) == "serial" and grid.chapter_mode(2) == "dask"
    monkeypatch.setenv(grid.SCHEDULER_ENV, "tcp://127.0.0.1:8786")
    assert grid.chapter_mode(1) == "dask"   # a cluster runs the seeds whatever this box has
