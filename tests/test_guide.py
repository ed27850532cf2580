"""GUIDE (chapter 08): PCA projection, uniform selection, the fold of the first block,
the LM distillation loss, the cached teacher, and the measures."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effdl_lib.chapters import guide as G
from effdl_lib.config import ConfigError
from effdl_lib.toolkits import lm


def _gpt(d, heads, vocab=40, block=8, layers=1, seed=0, norm="ln", mlp_ratio=4):
    torch.manual_seed(seed)
    model = lm.GPT(lm.GPTConfig(vocab, block, layers, d, heads, mlp_ratio)).double()
    for b in model.blocks:
        if norm == "none":
            b.ln1, b.ln2 = nn.Identity(), nn.Identity()
        elif norm == "rms":
            b.ln1, b.ln2 = nn.RMSNorm(d).double(), nn.RMSNorm(d).double()
    return model


def _perturb(model, scale=0.3, seed=1):
    """Move every parameter off its default (gains off 1, biases off 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


# ---------------------------------------------------------------- PCA

@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("d", [1, 3, 6])
def test_reconstruction_error_is_one_minus_explained_variance(centered, d):
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0)) @ torch.diag(
        torch.tensor([5.0, 3, 2, 1, 0.5, 0.1])) + 2.0
    pca = G.pca_projection(x, d, centered)
    x64 = x.double()
    ref = x64 - (x64.mean(0) if centered else 0)
    err = ((x64 - pca.reconstruct(x)) ** 2).sum() / (ref ** 2).sum()
    assert float(err) == pytest.approx(1 - pca.explained_total, abs=1e-12)
    assert torch.allclose(pca.components.T @ pca.components, torch.eye(d, dtype=torch.float64), atol=1e-12)
    assert pca.explained.shape == (d,) and bool((pca.explained[:-1] >= pca.explained[1:]).all())


def test_pca_matches_numpy_eigenvectors_and_has_deterministic_signs():
    x = torch.randn(80, 5, generator=torch.Generator().manual_seed(3))
    pca = G.pca_projection(x, 5, centered=True)
    xc = (x.double() - x.double().mean(0)).numpy()
    vals, vecs = np.linalg.eigh(xc.T @ xc)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    np.testing.assert_allclose(pca.explained.numpy(), vals / vals.sum(), rtol=1e-10)
    for j in range(5):  # same direction up to sign; the sign rule: largest |entry| positive
        col = pca.components[:, j].numpy()
        assert abs(abs(col @ vecs[:, j]) - 1) < 1e-8
        assert col[np.argmax(np.abs(col))] > 0
    flipped = G.pca_projection(-x, 5, centered=True)      # the sign does not follow the data's
    assert torch.allclose(flipped.components, pca.components, atol=1e-10)


def test_pca_full_rank_reconstructs_exactly_and_hand_example():
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-3.0, 0.0], [0.0, -1.0]])
    pca = G.pca_projection(x, 1)
    assert torch.allclose(pca.components[:, 0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert pca.explained_total == pytest.approx(18 / 20)
    assert torch.allclose(G.pca_projection(x, 2).reconstruct(x), x.double(), atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    ((torch.zeros(4, 3), 1), "constant"),
    ((torch.randn(4, 3), 4), "d must be"),
    ((torch.randn(4, 3), 0), "d must be"),
    ((torch.randn(4), 1), "2-D"),
    ((torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1), "NaN"),
])
def test_pca_bad_input(bad, match):
    table = bad[0].clone()
    with pytest.raises(ValueError, match=match):
        G.pca_projection(*bad)
    assert torch.equal(bad[0], table) or torch.isnan(table).any()  # input untouched


# ---------------------------------------------------------------- uniform selection

@pytest.mark.parametrize("n, m, want", [
    (4, 2, [0, 3]), (4, 3, [0, 2, 3]), (6, 3, [0, 3, 5]), (8, 4, [0, 2, 5, 7]),
    (5, 5, [0, 1, 2, 3, 4]), (7, 1, [0]), (10, 4, [0, 3, 6, 9]), (256, 128, None)])
def test_uniform_indices_evenly_spaced_sorted_round_half_up(n, m, want):
    got = G.uniform_indices(n, m)
    if want is not None:
        assert got == want
    assert got == sorted(set(got)) and len(got) == m and got[0] == 0
    if m > 1:
        assert got[-1] == n - 1
        exact = np.arange(m) * (n - 1) / (m - 1)
        assert np.all(np.abs(np.asarray(got) - exact) <= 0.5)   # nearest, halves up
        assert np.all(np.diff(got) >= math.floor((n - 1) / (m - 1)))


def test_uniform_indices_differs_from_numpy_rounding_at_halves():
    # linspace(0, 5, 3) = [0, 2.5, 5]: numpy rounds 2.5 to 2 (half to even), we to 3
    assert np.round(np.linspace(0, 5, 3)).astype(int).tolist() == [0, 2, 5]
    assert G.uniform_indices(6, 3) == [0, 3, 5]


@pytest.mark.parametrize("n, m, err", [(3, 4, ValueError), (3, 0, ValueError),
                                       (3.0, 2, TypeError), (True, 1, TypeError)])
def test_uniform_indices_bad_input(n, m, err):
    with pytest.raises(err):
        G.uniform_indices(n, m)


# ---------------------------------------------------------------- the fold

def _block_check(teacher, student, info, seed=5):
    m = info.pca.components
    x_t = torch.randn(2, teacher.cfg.block, teacher.cfg.d_model, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(seed))
    return G.fold_error(teacher, student, x_t, m)


@pytest.mark.parametrize("norm", ["none", "rms"])
def test_same_size_student_reproduces_first_block_without_layernorm(norm):
    teacher = _perturb(_gpt(16, 4, norm=norm))
    student = _gpt(16, 4, norm=norm, seed=9)
    info = G.guide_init(student, teacher)
    assert info.heads == (0, 1, 2, 3) and info.units == tuple(range(64))
    assert _block_check(teacher, student, info) < 1e-12
    # whole model: the student's stream after block 1 is M^T of the teacher's
    idx = torch.randint(0, 40, (3, 8), generator=torch.Generator().manual_seed(2))
    m = info.pca.components
    with torch.no_grad():
        h_t = teacher.blocks[0](teacher.tok(idx) + teacher.pos(torch.arange(8)))
        h_s = student.blocks[0](student.tok(idx) + student.pos(torch.arange(8)))
    assert torch.allclose(h_s, h_t @ m, atol=1e-10)


def test_layernorm_breaks_exactness_but_stays_close():
    teacher = _perturb(_gpt(16, 4, norm="ln"), scale=0.1)
    student = _gpt(16, 4, norm="ln", seed=9)
    info = G.guide_init(student, teacher)
    err = _block_check(teacher, student, info)
    assert 1e-6 < err < 0.5, err
    assert info.norm == "layernorm"


def test_layernorm_bias_goes_into_the_student_norm_by_least_squares():
    teacher = _gpt(16, 4, norm="ln")
    with torch.no_grad():
        teacher.blocks[0].ln1.bias.normal_(0, 0.5)
    student = _gpt(16, 4, norm="ln", seed=9)
    G.guide_init(student, teacher)
    w_t = teacher.blocks[0].attn.qkv.weight.detach()
    w_s = student.blocks[0].attn.qkv.weight.detach()
    b_s = student.blocks[0].ln1.bias.detach()
    want = w_t @ teacher.blocks[0].ln1.bias.detach()
    resid = w_s @ b_s - want
    # least squares: the residual is orthogonal to W_S's columns (normal equations) and
    # smaller than with no bias; not zero, since W_S = W diag(g) P_T M loses the
    # direction the teacher's centring removes
    assert torch.allclose(w_s.T @ resid, torch.zeros(16, dtype=torch.float64), atol=1e-10)
    assert resid.norm() < 0.5 * want.norm()
    assert torch.all(student.blocks[0].ln1.weight == 1)


def test_embeddings_are_the_projection_and_other_layers_untouched():
    teacher = _perturb(_gpt(16, 4, layers=2))
    student = _gpt(8, 2, layers=2, seed=3)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    info = G.guide_init(student, teacher, first_block=False)
    m = info.pca.components
    assert torch.allclose(student.tok.weight, teacher.tok.weight @ m)
    assert torch.allclose(student.pos.weight, teacher.pos.weight @ m)
    assert student.head.weight is student.tok.weight          # tied head follows
    for k, v in student.state_dict().items():
        if not k.startswith(("tok.", "pos.", "head.")):
            assert torch.equal(v, before[k]), k
    assert info.heads is None and info.units is None


def test_selection_shapes_and_rows_for_a_smaller_student():
    teacher = _perturb(_gpt(16, 4))
    student = _gpt(8, 2, seed=3)
    info = G.guide_init(student, teacher)
    assert info.heads == (0, 3) and info.head_dims == (0, 1, 2, 3)
    assert info.units == tuple(G.uniform_indices(64, 32))
    m = info.pca.components
    # the attention output of head 3 (teacher columns 12..15) lands on student columns 4..7
    want = m.T @ teacher.blocks[0].attn.proj.weight.detach()[:, 12:16]
    assert torch.allclose(student.blocks[0].attn.proj.weight[:, 4:8], want)


def test_guide_init_bad_input_raises_and_leaves_the_student_untouched():
    teacher = _gpt(16, 4)
    for student, match in ((_gpt(16, 4, vocab=41), "vocabulary"), (_gpt(32, 4), "wider"),
                           (_gpt(16, 4, block=16), "context")):
        before = {k: v.clone() for k, v in student.state_dict().items()}
        with pytest.raises(ValueError, match=match):
            G.guide_init(student, teacher)
        assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
    for student, err, match in ((_gpt(16, 8), ValueError, "heads"),          # 8 heads > 4
                                (_gpt(16, 4, norm="rms"), TypeError, "same norm"),
                                (_gpt(16, 4, mlp_ratio=8), ValueError, "MLP")):
        before = {k: v.clone() for k, v in student.state_dict().items()}
        with pytest.raises(err, match=match):
            G.guide_init(student, teacher)
        assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
    with pytest.raises(ValueError, match="nothing"):
        G.guide_init(_gpt(16, 4), teacher, embeddings=False, first_block=False)


def test_mismatched_tokenizers_raise_a_clear_error():
    a, b = lm.CharTokenizer("abcd"), lm.CharTokenizer("abce")
    G.same_vocabulary(a, lm.CharTokenizer("dcba"))
    with pytest.raises(ValueError, match="token 'd'"):
        G.same_vocabulary(a, b)
    with pytest.raises(ValueError, match="size"):
        G.same_vocabulary(a, lm.CharTokenizer("abc"))
    with pytest.raises(TypeError):
        G.same_vocabulary(a, object())


# ---------------------------------------------------------------- the KD loss

def test_lm_kd_loss_against_hand_values():
    s = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]]))
    t = torch.log(torch.tensor([[[0.25, 0.5, 0.25], [0.2, 0.3, 0.5]]]))
    y = torch.tensor([[0, 2]])
    ce = (-math.log(0.5) - math.log(0.5)) / 2
    kl = (0.25 * math.log(0.25 / 0.5) + 0.5 * math.log(0.5 / 0.25)) / 2   # second row: 0
    assert float(G.lm_kd_loss(s, t, y, 0.0, 1.0)) == pytest.approx(ce, abs=1e-6)
    assert float(G.lm_kd_loss(s, t, y, 1.0, 1.0)) == pytest.approx(kl, abs=1e-6)
    assert float(G.lm_kd_loss(s, t, y, 0.3, 1.0)) == pytest.approx(0.7 * ce + 0.3 * kl, abs=1e-6)
    # temperature: T^2 KL of the softened distributions (independent numpy reference)
    T = 2.0
    ps = np.exp(s.numpy() / T); ps /= ps.sum(-1, keepdims=True)
    pt = np.exp(t.numpy() / T); pt /= pt.sum(-1, keepdims=True)
    ref = T * T * (pt * np.log(pt / ps)).sum(-1).mean()
    assert float(G.lm_kd_loss(s, t, y, 1.0, T)) == pytest.approx(float(ref), abs=1e-6)


def test_lm_kd_loss_bad_input():
    s, y = torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="weight"):
        G.lm_kd_loss(s, s, y, 1.5, 1.0)
    with pytest.raises(ValueError, match="match"):
        G.lm_kd_loss(s, torch.zeros(1, 2, 4), y, 0.5, 1.0)
    with pytest.raises(ValueError, match="temperature"):
        G.lm_kd_loss(s, s, y, 0.5, 0.0)


def test_kd_student_trains_only_the_student_and_evaluates_plain_ce():
    teacher, student = _gpt(16, 4).float(), _gpt(8, 2, seed=2).float()
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = G.KDStudent(student, teacher, 0.5, 2.0)
    ids = torch.randint(0, 40, (400,), generator=torch.Generator().manual_seed(0))
    starts = lm.fixed_windows(ids, 8, 4)
    lm.train(model, ids, steps=3, batch=4, block=8, lr=1e-2, seed=0)
    assert all(torch.equal(v, t_before[k]) for k, v in teacher.state_dict().items())
    assert lm.evaluate(model, ids, starts, 8) == pytest.approx(lm.evaluate(student, ids, starts, 8))
    with pytest.raises(ValueError, match="vocabulary"):
        G.KDStudent(_gpt(8, 2, vocab=41).float(), teacher, 0.5, 1.0)


# ---------------------------------------------------------------- config, arms, measures

def test_config_profiles_and_bad_values():
    assert G.Config.resolve("cpu").teacher_steps >= 3 * G.Config.resolve("cpu").student_steps
    for bad in ({"student_d": 256}, {"teacher_steps": 10}, {"kd_weights": (1.5,)},
                {"student_heads": 3}, {"recon_dims": (512,)}, {"corpus": "nope"},
                {"kd_weights": ()}):
        with pytest.raises(ConfigError):
            G.Config.resolve("cpu", bad)


def test_arms_share_the_initialisation_of_a_seed():
    cfg = G.Config.resolve("smoke")
    teacher = _perturb(lm.GPT(cfg.teacher_config(64)))
    scratch = G.build_arm("scratch", cfg, teacher, 1)[1]
    kd_model, kd_student, _ = G.build_arm("kd", cfg, teacher, 1, (0.5, 2.0))
    emb = G.build_arm("guide_emb", cfg, teacher, 1)[1]
    assert isinstance(kd_model, G.KDStudent)
    for k, v in scratch.state_dict().items():
        assert torch.equal(v, kd_student.state_dict()[k])
        if not k.startswith(("tok.", "pos.", "head.")):
            assert torch.equal(v, emb.state_dict()[k])
    with pytest.raises(ValueError, match="unknown arm"):
        G.build_arm("nope", cfg, teacher, 0)
    with pytest.raises(ValueError, match="needs the KD"):
        G.build_arm("kd", cfg, teacher, 0)


def test_choose_kd_on_validation_loss_first_on_tie():
    t = pd.DataFrame({"kd_weight": [0.5, 0.5, 0.9], "temperature": [1.0, 2.0, 2.0],
                      "val_loss": [3.0, 2.5, 2.5], "test_loss": [0.0, 9.0, 9.0]})
    assert G.choose_kd(t) == (0.5, 2.0)


def _fake_results(losses, teacher=4.0):
    rows = [{"seed": s, "arm": a, "test_loss": v, "val_loss": v, "seconds": 10.0,
             "init_seconds": 0.01} for a, vals in losses.items() for s, v in enumerate(vals)]

    class Timing:
        repeats, arms = 5, ["scratch", "guide", "kd", "guide_kd"]

        def ratio(self, a, b):
            from effdl_lib.stats import bootstrap_ratio
            return bootstrap_ratio([1.0, 1.01, 0.99, 1.0, 1.02], [1.0] * 5)

        def gate(self):
            return None

    class Cfg:
        student_steps, time_steps = 100, 3

    return {"runs": pd.DataFrame(rows), "teacher": {"test_loss": teacher}, "timing": Timing(),
            "cfg": Cfg()}


def test_gap_share_and_measures_by_hand():
    losses = {"scratch": [5.0, 5.2, 4.8, 5.0], "guide_emb": [4.7, 4.9, 4.5, 4.7],
              "guide": [4.6, 4.8, 4.4, 4.6], "kd": [4.8, 5.0, 4.6, 4.8],
              "guide_kd": [4.45, 4.65, 4.25, 4.45]}
    r = _fake_results(losses)
    shares = G.gap_shares(r["runs"], 4.0)
    assert shares["guide"].mean == pytest.approx(0.4 / 1.0)     # (5.0 - 4.6) / (5.0 - 4.0)
    m = G.measure(r)
    assert set(m) == set(G.CLAIMS)
    assert m["guide-closes-gap"].estimate.mean == pytest.approx(0.4)
    assert m["guide-beats-kd"].estimate.mean == pytest.approx(0.2)
    assert m["guide-kd-near-additive"].estimate.mean == pytest.approx(0.55 / 0.6)
    assert m["first-block-adds"].estimate.mean == pytest.approx(0.1)
    assert m["guide-share-at-scale"].estimate is None
    # an effect inside the seed noise is not testable
    losses["guide_kd"] = [4.5, 4.8, 4.3, 4.6]
    assert G.measure(_fake_results(losses))["guide-kd-beats-guide"].estimate is None


def test_share_curves_by_hand():
    curves = pd.DataFrame([{"seed": 0, "step": 10, "arm": a, "val_loss": v}
                           for a, v in (("scratch", 5.0), ("guide_emb", 4.5), ("guide", 4.0),
                                        ("kd", 5.0), ("guide_kd", 4.0))])
    sc = G.share_curves(curves, 3.0).set_index("arm")["share"]
    assert sc["guide_emb"] == pytest.approx(0.25) and sc["guide"] == pytest.approx(0.5)


def test_reconstruction_table_full_rank_is_the_teacher():
    teacher = _perturb(_gpt(8, 2, vocab=30)).float()
    ids = torch.randint(0, 30, (300,), generator=torch.Generator().manual_seed(0))
    starts = lm.fixed_windows(ids, 8, 6)
    t = G.reconstruction_table(teacher, [2, 8], ids, starts, 8, False)
    assert t.loc[1, "explained variance"] == pytest.approx(1.0)
    assert t.loc[1, "loss increase"] == pytest.approx(0.0, abs=1e-4)
    assert t.loc[0, "explained variance"] < 1


def test_teacher_cache_roundtrip_and_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path))
    from effdl_lib import data
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path)
    cfg = G.Config.resolve("smoke", {"teacher_steps": 90, "student_steps": 30})
    first = G.get_teacher(cfg)
    assert not first.from_cache and first.path.exists()
    again = G.get_teacher(cfg)
    assert again.from_cache and again.key == first.key
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
    first.path.write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unusable"):
        rebuilt = G.get_teacher(cfg)
    assert not rebuilt.from_cache
    for k, v in first.model.state_dict().items():     # same seed, same batches: same teacher
        assert torch.allclose(v, rebuilt.model.state_dict()[k])


def test_fold_demo_is_exact_without_layernorm_and_checks_input():
    torch.manual_seed(0)
    assert G.fold_demo("none") < 1e-12 and G.fold_demo("RMSNorm") < 1e-12
    assert G.fold_demo("LayerNorm") > 1e-6
    with pytest.raises(ValueError, match="norm must be"):
        G.fold_demo("BatchNorm")
