import numpy as np
import pytest
import torch

from effdl_lib.chapters import ood_distillation as ood
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


def test_models_shapes():
    x = torch.rand(3, 1, 28, 28)
    assert ood.teacher_cnn()(x).shape == (3, 10)
    assert ood.student_mlp(32)(x).shape == (3, 10)
    assert ood.n_params(ood.student_mlp(32)) < ood.n_params(ood.teacher_cnn())


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
