import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effdl_lib.chapters import slam as S
from effdl_lib.toolkits import distill as D
from conftest import needs_data


def _logits(p_label: float, n_classes: int = 4) -> torch.Tensor:
    """Logits whose softmax puts p_label on class 0 and the rest evenly on the others."""
    rest = (1 - p_label) / (n_classes - 1)
    return torch.log(torch.tensor([[p_label] + [rest] * (n_classes - 1)], dtype=torch.float64))


def test_mix_at_alpha_one_is_plain_cross_entropy():
    logits = torch.randn(6, 5, dtype=torch.float64)
    label = torch.tensor([0, 1, 2, 3, 4, 0])
    ones = torch.ones(6, dtype=torch.float64)
    for normalized in (False, True):
        got = -S.slam_log_mix(logits, label, ones, 3 * ones, normalized)
        assert torch.allclose(got, F.cross_entropy(logits, label, reduction="none"), atol=1e-12)


def test_hand_computed_mix_both_forms():
    # f_y = 0.4, alpha = 0.7, k = 3: unnormalised 0.7*0.4 + 0.3*0.6 = 0.46;
    # normalised 0.7*0.4 + 0.3*0.6/2 = 0.37
    logits, label = _logits(0.4), torch.tensor([0])
    a, k = torch.tensor([0.7], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    assert float(-S.slam_log_mix(logits, label, a, k, False)) == pytest.approx(-math.log(0.46), rel=1e-9)
    assert float(-S.slam_log_mix(logits, label, a, k, True)) == pytest.approx(-math.log(0.37), rel=1e-9)


def test_both_forms_coincide_at_k_two():
    logits = torch.randn(8, 4, dtype=torch.float64)
    label = torch.randint(0, 4, (8,))
    alpha = torch.rand(8, dtype=torch.float64)
    two = torch.full((8,), 2.0, dtype=torch.float64)
    assert torch.allclose(S.slam_log_mix(logits, label, alpha, two, False),
                          S.slam_log_mix(logits, label, alpha, two, True), atol=1e-12)


def test_loss_stays_finite_as_the_label_probability_vanishes():
    label = torch.tensor([0])
    a, k = torch.tensor([0.6]), torch.tensor([3.0])
    for p in (1e-3, 1e-12, 1e-30):
        logits = torch.tensor([[math.log(p), 0.0, 0.0, 0.0]])
        for normalized, floor in ((False, 0.4), (True, 0.2)):
            loss = -S.slam_log_mix(logits, label, a, k, normalized)
            assert torch.isfinite(loss).all()
            assert float(loss) == pytest.approx(-math.log(floor), rel=1e-3)  # -> -log((1-a)/c)
    # an extreme logit (f_y -> 0 in float32) keeps the gradient finite too
    logits = torch.tensor([[-200.0, 0.0, 0.0, 0.0]], requires_grad=True)
    (-S.slam_log_mix(logits, label, a, k, False)).sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("normalized, k", [(False, 3), (True, 3), (True, 5)])
def test_gradient_sign_flips_below_the_threshold(normalized, k):
    threshold = 1 / k if normalized else 0.5
    label, kk = torch.tensor([0]), torch.tensor([float(k)], dtype=torch.float64)
    for alpha, pulls_towards in ((threshold + 0.05, True), (threshold - 0.05, False)):
        logits = _logits(0.3).clone().requires_grad_(True)
        loss = -S.slam_log_mix(logits, label, torch.tensor([alpha], dtype=torch.float64), kk, normalized)
        loss.sum().backward()
        # descending the loss raises the label's logit iff the gradient on it is negative
        assert (float(logits.grad[0, 0]) < 0) == pulls_towards, (alpha, threshold)
    assert S.push_away_share(np.array([0.2, 0.4, 0.6, 0.9]), np.array([3, 3, 3, 3]), normalized) == \
        (0.25 if normalized else 0.5)


def test_slam_loss_module_mixes_labelled_and_pseudo_rows():
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    side = torch.tensor([[1.0, 2.0, 0.0], [0.2, 3.0, 0.0], [0.7, 3.0, 1.0], [0.9, 2.0, 1.0]],
                        dtype=torch.float64)
    ce = F.cross_entropy(logits, target, reduction="none")
    mixed = -S.slam_log_mix(logits, target, side[:, 0], side[:, 1], True)
    want = torch.cat([ce[:2], mixed[2:]]).mean()
    assert torch.allclose(S.SLaMLoss(normalized=True)(logits, target, side), want)
    with pytest.raises(ValueError, match="alpha, k, is_pseudo"):
        S.SLaMLoss()(logits, target, side[:, :2])
    with pytest.raises(ValueError, match="alpha must lie in"):
        S.slam_log_mix(logits, target, torch.full((4,), 1.5), torch.full((4,), 3.0), False)
    with pytest.raises(ValueError, match="needs k >= 2"):
        S.slam_log_mix(logits, target, torch.full((4,), 0.5), torch.ones(4), True)


def test_taylor_cross_entropy_hand_values():
    # p_y = 0.25: order 1 -> 0.75; order 2 -> 0.75 + 0.75^2 / 2 = 1.03125
    logits = _logits(0.25)
    y = torch.tensor([0])
    assert float(S.taylor_cross_entropy(logits, y, 1)) == pytest.approx(0.75, rel=1e-9)
    assert float(S.taylor_cross_entropy(logits, y, 2)) == pytest.approx(1.03125, rel=1e-9)
    # high order approaches -log p_y
    assert float(S.taylor_cross_entropy(logits, y, 200)) == pytest.approx(math.log(4), rel=1e-6)
    with pytest.raises(ValueError):
        S.taylor_cross_entropy(logits, y, 0)


def test_choose_k_on_a_hand_made_validation_set():
    # 10 examples, 4 classes; the truth's rank in the teacher's ordering:
    # rank 1 for 6, rank 2 for 2, rank 3 for 1, rank 4 for 1.
    ranks = [1, 1, 1, 1, 1, 1, 2, 2, 3, 4]
    logits, y = [], []
    for r in ranks:
        logits.append([4.0, 3.0, 2.0, 1.0])
        y.append(r - 1)
    logits, y = torch.tensor(logits), np.array(y)
    # top-1 0.6, top-2 0.8, top-3 0.9, top-4 1.0
    assert S.choose_k(logits, y, 0.6).ks.tolist() == [2]    # at least 2
    assert S.choose_k(logits, y, 0.8).ks.tolist() == [2]
    assert S.choose_k(logits, y, 0.85).ks.tolist() == [3]
    assert S.choose_k(logits, y, 0.9).ks.tolist() == [3]
    assert S.choose_k(logits, y, 0.95).ks.tolist() == [4]
    # per margin bin: low margins (the wrong ones here) need larger k
    score = np.array([0.9] * 6 + [0.1] * 4)
    kc = S.choose_k(logits, y, 0.9, bins=2, score_v=score)
    assert kc(np.array([0.05, 0.95])).tolist() == [4, 2]
    with pytest.raises(ValueError):
        S.choose_k(logits, y, 1.5)


def test_halfspace_forward_correction_is_not_worse_under_noise():
    out = S.halfspace_rcn(n=2000, dim=10, noise=0.3, margin=0.1, seed=0)
    assert out["forward_corrected"] >= out["plain"] - 0.01
    assert out["forward_corrected_cosine"] > 0.9
    with pytest.raises(ValueError):
        S.halfspace_rcn(100, 3, 0.6, 0.1, 0)


@needs_data
@pytest.mark.parametrize("noise", ["permuted", "uniform"])
def test_topk_control_follows_slams_model(noise):
    data = D.load_dataset("fashion")
    rows = np.arange(60000)  # every training row, the brightest included (a(x) = 1)
    t = D.synthetic_topk_teacher(data, rows, seed=1, k=3, noise=noise)
    y = data.y[rows]
    assert torch.isfinite(t.logits).all()                               # a(x) = 1 stays finite
    assert D.topk_correct(t.logits, y, 3).all()                         # truth in the top-k
    given = D.hard_labels(t.logits).numpy()
    assert (given == y).mean() == pytest.approx(t.correct.mean())
    assert abs(t.correct.mean() - t.accuracy.mean()) < 0.01             # accuracy as stated
    confusions = {(int(a), int(b)) for a, b in zip(y[given != y], given[given != y])}
    # systematic: one wrong class per true class; uniform: every other class occurs
    assert len(confusions) == (10 if noise == "permuted" else 90)
    again = D.synthetic_topk_teacher(data, rows, seed=1, k=3, noise=noise)
    assert torch.equal(again.logits, t.logits)                          # deterministic per seed
    with pytest.raises(ValueError):
        D.synthetic_topk_teacher(data, rows, seed=1, k=1)
    with pytest.raises(ValueError, match="unknown noise"):
        D.synthetic_topk_teacher(data, rows, seed=1, k=3, noise="gaussian")


def test_taylor_applies_to_pseudo_rows_only():
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    side = torch.tensor([[1, 2, 0], [1, 2, 0], [0.5, 3, 1], [0.5, 3, 1]], dtype=torch.float64)
    want = torch.cat([F.cross_entropy(logits[:2], target[:2], reduction="none"),
                      S.taylor_cross_entropy(logits[2:], target[2:], 2, "none")]).mean()
    assert torch.allclose(S.taylor_on_pseudo(logits, target, side, 2), want)


def test_config_profiles_and_bad_values():
    from effdl_lib.config import ConfigError
    assert S.Config.resolve("smoke").seeds <= S.Config.resolve("cpu").seeds
    with pytest.raises(ConfigError, match="k_target"):
        S.Config.resolve("cpu", {"k_target": 0.0})
    with pytest.raises(ConfigError, match="exceeds"):
        S.Config.resolve("cpu", {"n_unlabeled": 55000, "n_val": 9000})


def test_theory_study_one_row_per_seed():
    t = S.theory_study(seeds=2, n=300)
    assert list(t["seed"]) == [0, 1] and {"plain", "forward_corrected"} <= set(t.columns)
