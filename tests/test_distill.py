"""The distillation toolkit: losses, splits, the teacher cache, calibration, the
positive control and the paired runner."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from effdl_lib.runtime import setup
from effdl_lib.toolkits import distill as D
from effdl_lib.training import train
from conftest import needs_data


# ---------------------------------------------------------------- kd_loss (moved from chapter 01)

def test_kd_loss_hand_computed():
    # teacher p = (3/4, 1/4), student q = (1/2, 1/2): KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(D.kd_loss(torch.zeros(1, 2), teacher, 1.0)) == pytest.approx(expected, rel=1e-6)


def test_kd_loss_temperature_scaling():
    # At T=2 the logits are halved (teacher p = (sqrt3, 1)/(sqrt3+1)) and the KL is scaled by 4.
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    kl = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
    assert float(D.kd_loss(torch.zeros(1, 2), teacher, 2.0)) == pytest.approx(4 * kl, rel=1e-6)


def test_kd_loss_zero_at_match_and_rejects_bad_t():
    logits = torch.randn(5, 10)
    assert float(D.kd_loss(logits, logits, 3.0)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        D.kd_loss(logits, logits, 0.0)


def test_kd_loss_gradient_flows_to_student_only():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)  # would receive a gradient if not detached
    D.kd_loss(s, t, 2.0).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


def test_chapter_01_uses_the_toolkit_loss():
    from effdl_lib.chapters import ood_distillation as ood
    assert ood.kd_loss is D.kd_loss


# ---------------------------------------------------------------- weighted two-part loss

def test_distill_loss_hand_computed():
    # row 0: labelled, class 0, student uniform over 2 -> CE ln 2, weight 1
    # row 1: pseudo, soft target (0.75, 0.25) at T=2, student logits (0, 0) -> T^2 * ln 2, weight 0.5
    s = torch.zeros(2, 2)
    target = torch.tensor([[1.0, 0.0], [0.75, 0.25]])
    side = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    expected = (math.log(2) + 0.5 * 4 * math.log(2)) / 2
    assert float(D.distill_loss(s, target, side, temperature=2.0)) == pytest.approx(expected, rel=1e-6)
    # the labelled row ignores the temperature: student logits (2, 0), class 0
    s = torch.tensor([[2.0, 0.0]])
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))
    got = D.distill_loss(s, torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), temperature=5.0)
    assert float(got) == pytest.approx(ce, rel=1e-6)


def test_distill_loss_equals_cross_entropy_for_hard_unit_weights():
    torch.manual_seed(0)
    s, y = torch.randn(7, 5), torch.randint(0, 5, (7,))
    side = torch.stack([torch.ones(7), (torch.arange(7) % 2).float()], 1)
    got = D.distill_loss(s, D.one_hot(y, 5), side)
    assert float(got) == pytest.approx(float(F.cross_entropy(s, y)), rel=1e-6)


def test_distill_loss_zero_weight_drops_the_example_and_bad_side():
    torch.manual_seed(1)
    s = torch.randn(3, 4, requires_grad=True)
    target = D.one_hot(torch.tensor([0, 1, 2]), 4)
    side = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    D.distill_loss(s, target, side).backward()
    assert s.grad[1].abs().sum() == 0 and s.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="side"):
        D.distill_loss(s, target, torch.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        D.distill_loss(s, target, torch.tensor([[-1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="do not match"):
        D.soft_cross_entropy(s, torch.ones(3, 5))


def test_train_passes_aligned_per_example_weights():
    rt = setup(0, threads=1, quiet=True)
    x = torch.arange(20, dtype=torch.float32).view(20, 1)
    seen = []

    def loss_fn(out, target, w):
        assert torch.equal(w[:, 0], target)  # the batch's own rows, in the same order
        seen.append(len(w))
        return out.sum() * 0.0 + (w[:, 1] * 0).sum() + out.mean()

    side = torch.stack([x[:, 0].clone(), torch.ones(20)], 1)
    train(torch.nn.Linear(1, 1), x, x[:, 0].clone(), loss_fn, steps=6, batch_size=8, lr=0.01,
          rt=rt, weights=side)
    assert seen == [8] * 6
    with pytest.raises(ValueError, match="rows"):
        train(torch.nn.Linear(1, 1), x, x[:, 0], loss_fn, steps=1, batch_size=8, lr=0.01, rt=rt,
              weights=side[:5])


def test_train_without_weights_is_unchanged():
    rt = setup(0, threads=1, quiet=True)
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    runs = []
    for w in (None, torch.ones(32)):
        torch.manual_seed(0)
        m = torch.nn.Linear(3, 2)
        fn = F.cross_entropy if w is None else (lambda o, t, w_: (F.cross_entropy(o, t, reduction="none") * w_).mean())
        runs.append(train(m, x, y, fn, steps=5, batch_size=8, lr=0.1, rt=rt, weights=w))
    assert runs[0] == pytest.approx(runs[1], rel=1e-6)


# ---------------------------------------------------------------- labels and margins

def test_margin_soft_hard_topk_hand_values():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    assert D.margin(logits) == pytest.approx([0.2, 0.7], abs=1e-6)
    assert D.hard_labels(logits).tolist() == [0, 2]
    assert D.soft_labels(logits)[0].tolist() == pytest.approx([0.5, 0.3, 0.2], abs=1e-6)
    # T=2: probabilities proportional to sqrt(p)
    p = np.sqrt([0.5, 0.3, 0.2])
    assert D.soft_labels(logits, 2.0)[0].tolist() == pytest.approx(list(p / p.sum()), abs=1e-6)
    assert D.topk_correct(logits, [1, 2], k=1).tolist() == [False, True]
    assert D.topk_correct(logits, [1, 2], k=2).tolist() == [True, True]
    with pytest.raises(ValueError):
        D.topk_correct(logits, [1, 2], k=4)
    with pytest.raises(ValueError):
        D.soft_labels(logits, -1.0)


# ---------------------------------------------------------------- splits

def _toy_data(n_train=400, n_test=100, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n_train + n_test)
    x = (rng.integers(0, 60, (n_train + n_test, 8, 8)) + 60 * y[:, None, None]).astype(np.uint8)
    return D.LabeledData("toy", x, y.astype(np.int64), 4, n_train)


def test_splits_disjoint_sizes_and_deterministic():
    data = _toy_data()
    a = D.make_splits(data, 50, 30, 200, seed=3, n_test=60)
    b = D.make_splits(data, 50, 30, 200, seed=3, n_test=60)
    c = D.make_splits(data, 50, 30, 200, seed=4, n_test=60)
    assert a.sizes() == {"labeled": 50, "val": 30, "unlabeled": 200, "test": 60}
    everything = np.concatenate([a.labeled, a.val, a.unlabeled, a.test])
    assert len(np.unique(everything)) == len(everything)
    assert a.test.min() >= 400 and max(a.labeled.max(), a.val.max(), a.unlabeled.max()) < 400
    for part in D.Splits.PARTS:
        assert np.array_equal(a[part], b[part])
    assert a.key == b.key and a.key != c.key
    assert not np.array_equal(a.labeled, c.labeled)


def test_splits_sweep_over_labels_keeps_v_and_u():
    data = _toy_data()
    small = D.make_splits(data, 20, 30, 200, seed=1)
    big = D.make_splits(data, 80, 30, 200, seed=1)
    assert np.array_equal(small.val, big.val) and np.array_equal(small.unlabeled, big.unlabeled)
    assert np.array_equal(small.labeled, big.labeled[:20])
    assert len(small.test) == 100


def test_splits_reject_overlap_and_bad_sizes():
    data = _toy_data()
    good = D.make_splits(data, 10, 10, 10, seed=0)
    bad = D.Splits(0, good.labeled, np.concatenate([good.val[:-1], good.labeled[:1]]),
                   good.unlabeled, good.test)
    with pytest.raises(ValueError, match="in both labeled and val"):
        bad.check()
    dup = D.Splits(0, np.array([1, 1]), good.val, good.unlabeled, good.test)
    with pytest.raises(ValueError, match="duplicate"):
        dup.check()
    leak = D.Splits(0, good.labeled, good.val, good.unlabeled, np.array([5]))
    with pytest.raises(ValueError, match="test rows"):
        leak.check(data)
    with pytest.raises(ValueError, match="exceeds"):
        D.make_splits(data, 300, 100, 100, seed=0)
    with pytest.raises(ValueError, match="positive"):
        D.make_splits(data, 0, 10, 10, seed=0)
    with pytest.raises(ValueError, match="n_test"):
        D.make_splits(data, 10, 10, 10, seed=0, n_test=101)
    with pytest.raises(KeyError):
        good["train"]


def test_labeled_data_validates_and_fingerprints():
    data = _toy_data()
    assert data.fingerprint == _toy_data().fingerprint != _toy_data(seed=1).fingerprint
    with pytest.raises(ValueError):
        D.LabeledData("bad", data.x.astype(np.float32), data.y, 4, 400)
    with pytest.raises(ValueError):
        D.LabeledData("bad", data.x, data.y[:-1], 4, 400)
    with pytest.raises(ValueError, match="labels"):
        D.LabeledData("bad", data.x, data.y + 4, 4, 400)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("svhn")


def test_to_tensor_gray_and_colour():
    gray = np.full((2, 4, 4), 255, np.uint8)
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 1] = 51
    assert D.to_tensor(gray).shape == (2, 1, 4, 4) and float(D.to_tensor(gray).max()) == 1.0
    t = D.to_tensor(rgb)
    assert t.shape == (2, 3, 4, 4) and float(t[:, 1].mean()) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        D.to_tensor(np.zeros((2, 4), np.uint8))


@pytest.mark.parametrize("arch", D.ARCHS)
def test_models_shapes(arch):
    data = _toy_data()
    model = D.make_model(arch, data, 8)
    assert model(data.tensor([0, 1, 2])).shape == (3, 4)
    with pytest.raises(ValueError):
        D.make_model("transformer", data, 8)


# ---------------------------------------------------------------- the teacher cache

@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path))
    calls = []
    real = D.train_teacher

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(D, "train_teacher", counting)
    return tmp_path, calls


def test_teacher_cache_hits_and_misses_on_config_and_seed(cache_env):
    folder, calls = cache_env
    rt = setup(0, threads=1, quiet=True)
    data = _toy_data()
    splits = D.make_splits(data, 60, 40, 100, seed=0, n_test=50)
    cfg = D.TeacherConfig(arch="mlp", width=8, steps=20, batch_size=16)
    first = D.teacher_outputs(data, splits, cfg, rt)
    assert not first.from_cache and len(calls) == 1 and first.path.parent == folder / "teachers"
    again = D.teacher_outputs(data, splits, cfg, rt)
    assert again.from_cache and len(calls) == 1
    for part in D.Splits.PARTS:
        assert torch.equal(first[part], again[part])
        assert first[part].shape == (len(splits[part]), 4)
    assert again.accuracy == first.accuracy
    other_cfg = D.TeacherConfig(arch="mlp", width=8, steps=21, batch_size=16)
    assert not D.teacher_outputs(data, splits, other_cfg, rt).from_cache and len(calls) == 2
    other_seed = D.make_splits(data, 60, 40, 100, seed=1, n_test=50)
    assert not D.teacher_outputs(data, other_seed, cfg, rt).from_cache and len(calls) == 3
    assert len({D.teacher_key(data, splits, cfg), D.teacher_key(data, splits, other_cfg),
                D.teacher_key(data, other_seed, cfg)}) == 3
    assert not list((folder / "teachers").glob("*.part"))  # nothing half-written left


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip"])
def test_corrupt_teacher_cache_is_rebuilt_not_trusted(cache_env, damage):
    folder, calls = cache_env
    rt = setup(0, threads=1, quiet=True)
    data = _toy_data()
    splits = D.make_splits(data, 60, 40, 100, seed=0, n_test=50)
    cfg = D.TeacherConfig(arch="mlp", width=8, steps=20, batch_size=16)
    first = D.teacher_outputs(data, splits, cfg, rt)
    raw = first.path.read_bytes()
    if damage == "garbage":
        first.path.write_bytes(b"not a zip file")
    elif damage == "truncate":
        first.path.write_bytes(raw[: len(raw) // 2])
    else:  # a valid file whose logits were altered after writing: the digest catches it
        with np.load(first.path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["unlabeled"] = arrays["unlabeled"] + 1.0
        np.savez(first.path, **arrays)
    with pytest.warns(RuntimeWarning, match="unusable"):
        rebuilt = D.teacher_outputs(data, splits, cfg, rt)
    assert not rebuilt.from_cache and len(calls) == 2
    for part in D.Splits.PARTS:  # retrained with the same seed: the same teacher
        assert torch.allclose(rebuilt[part], first[part], atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert D.teacher_outputs(data, splits, cfg, rt).from_cache  # the file is good again


def test_teacher_config_rejects_bad_values():
    with pytest.raises(ValueError, match="architecture"):
        D.TeacherConfig(arch="vit")
    with pytest.raises(ValueError):
        D.TeacherConfig(steps=0)
    with pytest.raises(ValueError):
        D.TeacherConfig(lr=2.0)


# ---------------------------------------------------------------- calibration

def test_isotonic_matches_hand_made_case():
    # pool-adjacent-violators by hand: (0, 1, 0, 1) -> (0, 1/2, 1/2, 1)
    iso = D.fit_isotonic([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    assert iso.predict([0.1, 0.2, 0.3, 0.4]).tolist() == pytest.approx([0, 0.5, 0.5, 1])
    assert iso.predict([-5.0, 5.0]).tolist() == pytest.approx([0, 1])  # clipped to the range
    # (1, 1, 0, 0, 1, 1): the middle four pool to 1/2
    iso = D.fit_isotonic([1, 2, 3, 4, 5, 6], [1, 1, 0, 0, 1, 1])
    assert iso.predict([1, 2, 3, 4, 5, 6]).tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5, 1, 1])


def test_calibration_is_monotone_and_cross_fitted():
    rng = np.random.default_rng(0)
    score = rng.random(400)
    correct = rng.random(400) < 0.2 + 0.7 * score
    cal = D.fit_calibration(score, correct, n_folds=4, seed=0)
    grid = np.linspace(-0.5, 1.5, 200)
    pred = cal(grid)
    assert np.all(np.diff(pred) >= 0) and pred.min() >= 0 and pred.max() <= 1
    assert set(np.bincount(cal.folds)) == {100}
    # each out-of-fold prediction comes from a fit that never saw its fold
    held = cal.folds == 2
    refit = D.fit_isotonic(score[~held], correct[~held])
    assert np.allclose(cal.oof[held], refit.predict(score[held]))
    assert not np.allclose(cal.oof[held], cal(score[held]))  # the full fit differs
    # close to the truth 0.2 + 0.7 s in the middle of the range
    assert abs(float(cal(np.array([0.5]))[0]) - 0.55) < 0.15


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="0/1"):
        D.fit_calibration(np.arange(20.0), np.full(20, 0.5))
    with pytest.raises(ValueError, match="equal length"):
        D.fit_calibration(np.arange(20.0), np.zeros(19))
    with pytest.raises(ValueError, match="finite"):
        D.fit_calibration(np.array([np.nan] * 20), np.zeros(20))
    with pytest.raises(ValueError, match="n_folds"):
        D.fit_calibration(np.arange(6.0), np.zeros(6), n_folds=5)


def test_binned_accuracy_hand_case():
    table = D.binned_accuracy([0.1, 0.2, 0.6, 0.7], [0, 1, 1, 1], edges=[0.0, 0.5, 1.0])
    assert table["accuracy"].tolist() == [0.5, 1.0] and table["n"].tolist() == [2, 2]
    assert table["score"].tolist() == pytest.approx([0.15, 0.65])


# ---------------------------------------------------------------- positive control

def test_synthetic_teacher_has_known_input_dependent_accuracy():
    rng = np.random.default_rng(0)
    n = 20000
    x = rng.integers(0, 256, (n, 4, 4)).astype(np.uint8)
    data = D.LabeledData("toy", x, rng.integers(0, 10, n).astype(np.int64), 10, n)
    rows = np.arange(n)
    syn = D.synthetic_teacher(data, rows, seed=0, acc_low=0.2, acc_high=1.0)
    rank = D.intensity_rank(data)
    assert syn.accuracy == pytest.approx(0.2 + 0.8 * rank)
    for lo, hi in ((0, 0.25), (0.75, 1.0)):  # measured accuracy follows a(x)
        sel = (rank >= lo) & (rank < hi)
        assert abs(syn.correct[sel].mean() - syn.accuracy[sel].mean()) < 0.02
    given = D.hard_labels(syn.logits).numpy()
    assert np.array_equal(given == data.y, syn.correct)
    probs = D.soft_labels(syn.logits)
    assert probs[rows, given].numpy() == pytest.approx(syn.accuracy, abs=1e-4)  # calibrated
    # per row and seed: asking for a subset in another order gives the same draws
    sub = D.synthetic_teacher(data, np.array([7, 3]), seed=0)
    assert torch.equal(sub.logits, syn.logits[[7, 3]])
    assert not torch.equal(D.synthetic_teacher(data, rows, seed=1).logits, syn.logits)
    with pytest.raises(ValueError):
        D.synthetic_teacher(data, rows, seed=0, acc_low=0.9, acc_high=0.5)


# ---------------------------------------------------------------- transfer sets and the runner

def test_transfer_set_stacks_l_and_u():
    x_l, y_l = torch.zeros(2, 1, 2, 2), torch.tensor([0, 2])
    x_u = torch.ones(3, 1, 2, 2)
    ts = D.transfer_set(x_l, y_l, x_u, torch.tensor([1, 1, 2]), weight_u=[0.5, 1.0, 0.0], n_classes=3)
    assert len(ts) == 5 and ts.target.shape == (5, 3)
    assert ts.side.tolist() == [[1, 0], [1, 0], [0.5, 1], [1, 1], [0, 1]]
    assert ts.target[0].tolist() == [1, 0, 0] and ts.target[4].tolist() == [0, 0, 1]
    soft = D.transfer_set(x_l, y_l, x_u, torch.full((3, 3), 1 / 3))
    assert soft.target[3].tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="weight_u"):
        D.transfer_set(x_l, y_l, x_u, torch.tensor([1, 1, 2]), weight_u=[-1, 1, 1], n_classes=3)


def test_run_paired_tidy_rotated_and_paired():
    order, contexts = [], []

    def prepare(seed):
        return {"seed": seed}

    def arm(name, value):
        def fn(ctx, seed):
            order.append((seed, name))
            contexts.append((name, ctx["seed"] == seed))
            return {"acc": value + seed}
        return fn

    table = D.run_paired([0, 1, 2], prepare, {"a": arm("a", 0.5), "b": arm("b", 0.25)})
    assert list(table.columns) == ["seed", "arm", "acc", "seconds"]
    assert table[["seed", "arm"]].values.tolist() == [[0, "a"], [0, "b"], [1, "a"], [1, "b"],
                                                       [2, "a"], [2, "b"]]
    assert order[:4] == [(0, "a"), (0, "b"), (1, "b"), (1, "a")]  # rotated each seed
    assert all(ok for _, ok in contexts)
    est = D.paired_estimate(table, "a", "b", "acc")
    assert est.mean == pytest.approx(0.25) and est.n == 3
    with pytest.raises(ValueError, match="reserved"):
        D.run_paired([0], prepare, {"a": lambda c, s: {"arm": 1}})
    with pytest.raises(ValueError):
        D.run_paired([0], prepare, {})
    with pytest.raises((ValueError, KeyError)):
        D.paired_estimate(table, "a", "c", "acc")


@needs_data
def test_fashion_loads_in_one_index_space():
    data = D.load_dataset("fashion")
    assert len(data) == 70000 and data.n_train == 60000 and data.n_classes == 10
    splits = D.make_splits(data, 500, 1000, 10000, seed=0)
    splits.check(data)
    assert len(splits.test) == 10000 and splits.test.min() == 60000


def test_synthetic_teacher_permuted_noise_is_one_wrong_class_per_true_class():
    rng = np.random.default_rng(2)
    n = 5000
    data = D.LabeledData("toy", rng.integers(0, 256, (n, 4, 4)).astype(np.uint8),
                         rng.integers(0, 10, n).astype(np.int64), 10, n)
    rows = np.arange(n)
    syn = D.synthetic_teacher(data, rows, seed=3, noise="permuted")
    uni = D.synthetic_teacher(data, rows, seed=3, noise="uniform")
    assert np.array_equal(syn.correct, uni.correct)  # same draws decide right or wrong
    given = D.hard_labels(syn.logits).numpy()
    wrong = ~syn.correct
    assert np.all(given[wrong] != data.y[wrong])
    for c in range(10):  # every wrong label of class c is the same class
        assert len(np.unique(given[wrong & (data.y == c)])) == 1
    assert len(np.unique(given[wrong])) == 10  # a derangement: every class is someone's confusion
    with pytest.raises(ValueError, match="unknown noise"):
        D.synthetic_teacher(data, rows, seed=0, noise="gaussian")


def test_cifar10_reader_labels_from_folders_and_caches(tmp_path, monkeypatch):
    import io
    import tarfile
    from PIL import Image
    tar_path = tmp_path / "cifar.tar.gz"
    colours = {"train/truck/0001.jpg": (0, 0, 255), "train/airplane/0000.jpg": (255, 0, 0),
               "test/cat/0000.jpg": (0, 255, 0)}
    with tarfile.open(tar_path, "w:gz") as tar:
        for name, rgb in colours.items():
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), rgb).save(buf, format="JPEG", quality=95)
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D._data, "path", lambda name, download=True: tar_path)
    x, y = D._cifar10_rgb("train")
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.uint8
    assert y.tolist() == [0, 9]  # airplane, truck: sorted by member name
    assert x[0, :, :, 0].mean() > 200 and x[1, :, :, 2].mean() > 200
    assert D._cifar10_rgb("test")[1].tolist() == [3]

    def offline(name, download=True):
        raise AssertionError("the archive was read again")
    monkeypatch.setattr(D._data, "path", offline)
    x2, y2 = D._cifar10_rgb("train")  # from the cache
    assert np.array_equal(x2, x) and np.array_equal(y2, y)
    cached = tmp_path / "cache" / "cifar10_train_rgb_jpeg.npz"
    cached.write_bytes(b"corrupt")
    monkeypatch.setattr(D._data, "path", lambda name, download=True: tar_path)
    assert np.array_equal(D._cifar10_rgb("train")[1], y)  # decoded again, not trusted


def test_teacher_key_changes_with_the_code_that_trains_it(monkeypatch):
    data = _toy_data()
    splits = D.make_splits(data, 20, 20, 20, seed=0, n_test=10)
    cfg = D.TeacherConfig(width=4, steps=2)
    key = D.teacher_key(data, splits, cfg)
    assert D.teacher_key(data, splits, cfg) == key
    D.teacher_code_hash.cache_clear()
    monkeypatch.setattr(D, "teacher_code_hash", lambda: "other code")
    assert D.teacher_key(data, splits, cfg) != key
