import math

import numpy as np
import pandas as pd
import pytest
import torch

from effdl_lib.chapters import survey_guide as G
from effdl_lib.config import ConfigError


@pytest.mark.parametrize("w", sorted(G.PAPER_TABLE))
def test_parameter_counts_equal_the_guides_table(w):
    model = G.GuideCNN(w)
    assert G.keras_params(model) == G.PAPER_TABLE[w][0]
    # PyTorch counts BatchNorm's running mean and variance as buffers, not parameters
    bn = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert G.n_params(model) == G.PAPER_TABLE[w][0] - 2 * bn


def test_channels_clamp_and_reject_bad_widths():
    assert G.channels(1.0) == (64, 128, 512)
    assert G.channels(0.01) == G.channels(0.05) and G.channels(9.0) == G.channels(3.0)
    for bad in (0, -1.0, float("nan"), "wide"):
        with pytest.raises(ValueError, match="positive number"):
            G.channels(bad)


def test_hinton_kd_against_hand_value():
    # student logits (0, 0), teacher (ln 3, 0), label 0, T = 1, alpha = 0.5:
    # CE = ln 2; KL(teacher || student) = 3/4 ln(3/2) + 1/4 ln(1/2)
    s, t, y = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0])
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(G.hinton_kd(s, t, y, 1.0, 0.5)) == pytest.approx(0.5 * math.log(2) + 0.5 * kl, rel=1e-6)
    # T = 2 multiplies the KL term by T^2 = 4 (of the softened distributions)
    p = np.exp(np.array([math.log(3.0) / 2, 0.0]))
    p /= p.sum()
    kl2 = float((p * np.log(p / 0.5)).sum())
    assert float(G.hinton_kd(s, t, y, 2.0, 1.0)) == pytest.approx(4 * kl2, rel=1e-6)


def test_augment_flips_and_translates_without_losing_content():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    out = G.augment(x, gen)
    assert out.shape == x.shape
    # with no shift every image is either itself or its mirror image
    flipped = G.augment(x, torch.Generator().manual_seed(1), max_shift=0)
    same = (flipped == x).flatten(1).all(1)
    mirror = (flipped == x.flip(3)).flatten(1).all(1)
    assert (same | mirror).all() and same.any() and mirror.any()
    # a shifted image's centre is an exact crop of the (possibly mirrored) original
    for i in range(8):
        o = out[i]
        ok = any(torch.equal(o[:, 3:29, 3:29], src[:, 3 + dy:29 + dy, 3 + dx:29 + dx])
                 for src in (x[i], x[i].flip(2)) for dy in range(-3, 4) for dx in range(-3, 4))
        assert ok, i


def test_quantization_leaves_the_float_model_and_gives_int8_weights():
    torch.manual_seed(0)
    model = G.GuideCNN(0.1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(32, 3, 32, 32) * 2 - 1
    q = G.quantize_int8(model, x)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    weights = [m.weight() for m in q.modules() if hasattr(m, "weight") and callable(m.weight)]
    assert weights and all(w.dtype == torch.qint8 for w in weights)
    # small models carry per-tensor overhead (scales, zero points, pickle): about 2x at
    # w = 0.1 (the guide's table: 2.8x), over 3x from w = 0.5 up (guide: 3.8x)
    assert G.state_bytes(q) * 1.8 < G.state_bytes(model)
    wide = G.GuideCNN(0.5).eval()
    assert G.state_bytes(G.quantize_int8(wide, x)) * 3 < G.state_bytes(wide)
    with torch.no_grad():
        assert (q(x) - model(x)).abs().max() < 0.5  # close to the float model


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_pruning_reaches_the_asked_sparsity(sparsity):
    torch.manual_seed(0)
    model = G.GuideCNN(0.1)
    pruned = G.magnitude_prune(model, sparsity)
    assert G.sparsity_of(pruned) == pytest.approx(sparsity, abs=1e-4)
    assert G.sparsity_of(model) < 0.01  # the original is untouched
    assert G.state_bytes(pruned) == pytest.approx(G.state_bytes(model), rel=0.01)  # dense file
    assert G.compressed_bytes(pruned) < G.compressed_bytes(model)
    with pytest.raises(ValueError):
        G.magnitude_prune(model, 1.0)


def test_channel_pruning_removes_parameters_and_keeps_the_interface():
    torch.manual_seed(0)
    model = G.GuideCNN(0.25).eval()
    pruned = G.channel_prune(model, 0.5)
    assert G.n_params(pruned) < 0.4 * G.n_params(model)
    assert pruned(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError):
        G.channel_prune(model, 1.0)


def test_svd_at_full_rank_reproduces_the_layer_and_lower_rank_saves_parameters():
    torch.manual_seed(0)
    model = G.GuideCNN(0.1).eval()
    _, c3, d = G.channels(0.1)
    x = torch.rand(4, 3, 32, 32)
    full = G.low_rank(model, min(16 * c3, d))
    with torch.no_grad():
        assert torch.allclose(full(x), model(x), atol=1e-5)
    small = G.low_rank(model, 4)
    assert G.n_params(small) < G.n_params(model)
    with pytest.raises(ValueError, match="rank must be in"):
        G.low_rank(model, 10_000)


def test_shrink_and_improve_reading_on_a_hand_table():
    rows = []
    for seed in (0, 1):
        for w, base, augkd_int8 in ((0.1, 0.60, 0.70), (0.25, 0.70, 0.74), (0.5, 0.75, 0.78)):
            rows += [{"seed": seed, "w": w, "arm": "base", "precision": "fp32", "test_acc": base,
                      "params": 1, "bytes": int(1000 * w * 4)},
                     {"seed": seed, "w": w, "arm": "aug_kd", "precision": "int8", "test_acc": augkd_int8,
                      "params": 1, "bytes": int(1000 * w)}]
    got = G.shrink_and_improve(pd.DataFrame(rows))
    # largest float baseline 0.75; within 0.005: w=0.25 (0.74) is not, w=0.5 (0.78) is
    assert got["width"] == 0.5 and got["size_ratio"] == pytest.approx(4.0)
    got = G.shrink_and_improve(pd.DataFrame(rows), tolerance=0.011)
    assert got["width"] == 0.25 and got["size_ratio"] == pytest.approx(8.0)


def test_config_profiles_and_bad_values():
    assert G.Config.resolve("smoke").n_train <= G.Config.resolve("cpu").n_train
    with pytest.raises(ConfigError, match="wider than every student"):
        G.Config.resolve("cpu", {"teacher_width": 0.2})
    with pytest.raises(ConfigError, match="widths"):
        G.Config.resolve("cpu", {"widths": [0.01]})
    with pytest.raises(ConfigError, match="ranks"):
        G.Config.resolve("cpu", {"ranks": [100000]})
