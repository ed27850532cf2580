"""LAuReL: identity at init, hand-computed outputs, parameter counts from the paper's
formulas, no stuck parameter, weight-decay exclusion, errors, and the chapter's
measures on synthetic results."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from effdl_lib.chapters import laurel as L
from effdl_lib.claims import NOT_TESTABLE, REPRODUCED
from effdl_lib.config import ConfigError
from effdl_lib.stats import bootstrap_share, recompute
from effdl_lib.toolkits import bench, lm

ALL = [(v, h) for v in L.VARIANTS for h in (("identity", "lowrank") if v == "PA" else ("identity",))]


def gpt(n_layer=3, d=16, seed=0):
    torch.manual_seed(seed)
    return lm.GPT(lm.GPTConfig(11, block=8, n_layer=n_layer, d_model=d, n_head=2))


def randomise(model, seed=1):
    """Block weights away from their init, so the branches are far from zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if not n.endswith(("rw_logits", "lr_A", "lr_B", "pa_A", "pa_B", "pa_gamma")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


class Lin(nn.Module):
    """A residual block x + W x (W given), for hand-computed outputs."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32))

    def branch(self, x):
        return x @ self.w.T

    def forward(self, x):
        return x + self.branch(x)


# ---------------------------------------------------------------- identity at init

@pytest.mark.parametrize("variant,pa_h", ALL)
def test_every_variant_is_the_plain_residual_at_init_gpt(variant, pa_h):
    base = randomise(gpt())
    wrapped = randomise(gpt())
    L.wrap(wrapped.blocks, 16, variant, rank=4, k=3, pa_h=pa_h)
    idx = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(0))
    assert (wrapped(idx) - base(idx)).abs().max() < 1e-6
    x = torch.randn(2, 8, 16)                           # and block by block: f(x) + x
    single = wrapped.blocks[0]
    if "PA" in variant:
        single.history.xs = []
    assert (single(x) - (single.block.branch(x) + x)).abs().max() < 1e-6


@pytest.mark.parametrize("variant", L.VISION_VARIANTS)
def test_every_variant_is_the_plain_residual_at_init_resnet(variant):
    cfg = L.Config.resolve("smoke")
    base, wrapped = L.build_resnet(L.BASELINE, cfg, 0), L.build_resnet(variant, cfg, 0)
    base.eval(), wrapped.eval()
    x = torch.randn(4, 1, 28, 28)
    assert (wrapped(x) - base(x)).abs().max() < 1e-6
    assert L.laurel_modules(wrapped) and all(m.block.conv1.weight.shape[0] in (16, 32)
                                             for m in L.laurel_modules(wrapped))


def test_rw_is_two_softmax_bounded_and_one_one_at_init():
    m = L.Laurel(Lin(torch.eye(2)), 2, "RW")
    assert torch.equal(2 * torch.softmax(m.rw_logits, 0), torch.tensor([1.0, 1.0]))
    with torch.no_grad():
        m.rw_logits.copy_(torch.tensor([math.log(3.0), 0.0]))   # softmax = (3/4, 1/4)
    x = torch.tensor([[1.0, -2.0]])
    assert torch.allclose(m(x), 1.5 * (x @ torch.eye(2)) + 0.5 * x)
    with torch.no_grad():
        m.rw_logits.copy_(torch.tensor([100.0, -100.0]))
    a, b = 2 * torch.softmax(m.rw_logits.detach(), 0)
    assert 0 <= float(a) <= 2 and 0 <= float(b) <= 2      # bounded


# ---------------------------------------------------------------- hand-computed outputs

def test_lr_is_f_plus_x_plus_BAx():
    w = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    m = L.Laurel(Lin(w), 3, "LR", rank=1)
    with torch.no_grad():
        m.lr_A.copy_(torch.tensor([[1.0, 1.0, 0.0]]))
        m.lr_B.copy_(torch.tensor([[1.0], [0.0], [2.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # f = (2, 2, -3); A x = 3; B A x = (3, 0, 6)
    assert torch.allclose(m(x), torch.tensor([[2 + 1 + 3, 2 + 2 + 0, -3 + 3 + 6.0]]))


def test_orthogonal_a_init_matches_the_paper():
    m = L.Laurel(Lin(torch.zeros(6, 6)), 6, "LR", rank=2)
    want = torch.zeros(2, 6)
    for i in range(6):
        want[i % 2, i] = 1 / math.sqrt(12)
    assert torch.allclose(m.lr_A, want) and torch.equal(m.lr_B, torch.zeros(6, 2))


def test_pa_identity_mixes_earlier_inputs_clamped_to_x0():
    blocks = nn.ModuleList([Lin(torch.zeros(1, 1)), Lin(torch.zeros(1, 1))])
    L.wrap(blocks, 1, "PA", k=3, pa_h="identity")
    with torch.no_grad():
        blocks[0].pa_gamma.copy_(torch.tensor([1.0, 2.0, 4.0]))
        blocks[1].pa_gamma.copy_(torch.tensor([1.0, 10.0, 100.0]))
        x0 = torch.tensor([[1.0]])
        x1 = blocks[0](x0)          # x0 + (1 + 2 + 4) x0 (x_{-1}, x_{-2} clamped to x0) = 8
        x2 = blocks[1](x1)          # x1 + 1 x1 + 10 x0 + 100 x0 = 8 + 8 + 110 = 126
        assert float(x1) == 8.0 and float(x2) == 126.0
        x1b = blocks[0](x0)         # a new forward pass resets the history
        assert float(blocks[1](x1b)) == 126.0
        with pytest.raises(RuntimeError, match="in order"):
            blocks[1](x1)           # block 1 twice without block 0


def test_rwlrpa_matches_equation_6():
    blocks = nn.ModuleList([Lin(torch.eye(2)), Lin(2 * torch.eye(2))])
    L.wrap(blocks, 2, "RW+LR+PA", rank=1, k=2)
    m = blocks[1]
    with torch.no_grad():
        m.rw_logits.copy_(torch.tensor([math.log(3.0), 0.0]))        # alpha, beta = 1.5, 0.5
        m.pa_gamma.copy_(torch.tensor([2.0, 3.0]))
        m.pa_A.copy_(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
        m.pa_B.copy_(torch.tensor([[[1.0], [1.0]], [[1.0], [0.0]]]))
    x0 = torch.tensor([[1.0, 2.0]])
    x1 = blocks[0](x0)                                  # identity at init: x0 + x0 = (2, 4)
    assert torch.equal(x1, torch.tensor([[2.0, 4.0]]))
    out = blocks[1](x1)
    # f = 2 x1 = (4, 8); j=0: 2 * B0 A0 x1 = 2 * 2 * (1, 1) = (4, 4); j=1: 3 * B1 A1 x0 = 3 * 2 * (1, 0)
    want = 1.5 * torch.tensor([4.0, 8.0]) + 0.5 * (x1[0] + torch.tensor([4.0, 4.0]) + torch.tensor([6.0, 0.0]))
    assert torch.allclose(out[0], want)


def test_lowrank_on_feature_maps_is_per_pixel_over_channels():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, generator=gen), torch.randn(5, 2, generator=gen)
    x = torch.randn(3, 5, 4, 4, generator=gen)
    want = (x.permute(0, 2, 3, 1) @ a.T @ b.T).permute(0, 3, 1, 2)
    assert torch.allclose(L._lowrank(x, a, b), want, atol=1e-5)


# ---------------------------------------------------------------- parameter counts

def formula(variant, D, r, k, pa_h="identity"):
    """The paper's counts (note: section 2, Table 4), written independently."""
    if variant == "RW":
        return 2
    if variant == "LR":
        return 2 * r * D
    if variant == "PA":
        return k if pa_h == "identity" else 2 * r * D + k
    if variant == "RW+LR":
        return 2 * r * D + 2
    return 2 * r * D * k + k + 2


@pytest.mark.parametrize("variant,pa_h", ALL)
@pytest.mark.parametrize("D,r,k", [(16, 4, 3), (24, 2, 1), (12, 12, 5)])
def test_parameter_counts_equal_the_formulas(variant, pa_h, D, r, k):
    model = gpt(n_layer=2, d=D)
    before = lm.n_params(model)
    L.wrap(model.blocks, D, variant, rank=r, k=k, pa_h=pa_h)
    added = lm.n_params(model) - before
    assert added == 2 * formula(variant, D, r, k, pa_h) == 2 * L.laurel_params(variant, D, r, k, pa_h)
    assert sum(p.numel() for _, p in L.own_params(model)) == added


def test_worked_count_of_section_3_2_1():
    # RW+LR with r = 4 on N = 20 layers of D = 1000: 2N(4D + 1) = 160,040
    blocks = nn.ModuleList(Lin(torch.zeros(1, 1)) for _ in range(20))
    before = sum(p.numel() for p in blocks.parameters())
    L.wrap(blocks, 1000, "RW+LR", rank=4)
    assert sum(p.numel() for p in blocks.parameters()) - before == 160_040


# ---------------------------------------------------------------- nothing stuck, nothing decayed

@pytest.mark.parametrize("variant,pa_h", ALL)
def test_every_laurel_parameter_moves_after_a_few_steps(variant, pa_h):
    model = randomise(gpt())
    L.wrap(model.blocks, 16, variant, rank=4, k=3, pa_h=pa_h)
    before = {n: p.detach().clone() for n, p in L.own_params(model)}
    opt = lm.make_optimizer(model, 1e-2, 0.1, L.exclude_laurel(model))
    ids = torch.randint(0, 11, (300,), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        x, y = lm.random_windows(ids, 8, 4, gen)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        if step == 0:       # LoRA-style: with B = 0, A's gradient is exactly zero at step 0
            for n, p in L.own_params(model):
                if n.endswith(("lr_A", "pa_A")):
                    assert p.grad is None or torch.count_nonzero(p.grad) == 0, n
                if n.endswith(("lr_B", "pa_B")):
                    assert torch.count_nonzero(p.grad) > 0, n
        opt.step()
    moved = {n: not torch.equal(before[n], p.detach()) for n, p in L.own_params(model)}
    assert moved and all(moved.values()), moved
    assert L.no_stuck_parameters() == 1.0


def test_gamma_zero_with_b_zero_would_deadlock():
    """Why the inits differ from the note's trap: gamma = 0 together with B = 0 gives both
    a zero gradient, so neither can ever move."""
    blocks = nn.ModuleList([Lin(torch.eye(3))])
    L.wrap(blocks, 3, "PA", rank=2, k=2, pa_h="lowrank")
    m = blocks[0]
    assert torch.equal(m.pa_gamma.detach(), torch.ones(2))   # our init: gamma = 1
    with torch.no_grad():
        m.pa_gamma.zero_()
    m(torch.randn(4, 3)).pow(2).sum().backward()
    assert torch.count_nonzero(m.pa_gamma.grad) == 0 and torch.count_nonzero(m.pa_B.grad) == 0


@pytest.mark.parametrize("variant,pa_h", ALL)
def test_laurel_parameters_are_in_no_weight_decay_group(variant, pa_h):
    model = gpt()
    L.wrap(model.blocks, 16, variant, rank=4, k=3, pa_h=pa_h)
    mine = {n for n, _ in L.own_params(model)}
    opt = lm.make_optimizer(model, 1e-3, 0.1, L.exclude_laurel(model))
    ids = {id(p) for _, p in L.own_params(model)}
    for g in opt.param_groups:
        if g["weight_decay"] > 0:
            assert not ids & {id(p) for p in g["params"]}
            assert not mine & set(g["names"])
    if any(n.endswith(("_A", "_B")) for n in mine):   # the predicate is what keeps them out
        plain = lm.param_groups(model, 0.1)
        assert mine & set(plain[0]["names"])


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("variant", ["rw", "RW+PA", "", "LR+RW"])
def test_bad_variant_names(variant):
    with pytest.raises(ValueError, match="unknown LAuReL variant"):
        L.Laurel(Lin(torch.eye(2)), 2, variant)
    with pytest.raises(ValueError, match="unknown LAuReL variant"):
        L.laurel_params(variant, 2)


@pytest.mark.parametrize("rank", [0, -1, 5, 2.0])
def test_bad_ranks(rank):
    with pytest.raises(ValueError, match="rank"):
        L.Laurel(Lin(torch.eye(4)), 4, "LR", rank=rank)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="k >= 1"):
        L.wrap(nn.ModuleList([Lin(torch.eye(2))]), 2, "PA", k=0)
    with pytest.raises(ValueError, match="pa_h"):
        L.wrap(nn.ModuleList([Lin(torch.eye(2))]), 2, "PA", pa_h="full")
    with pytest.raises(ValueError, match="History"):
        L.Laurel(Lin(torch.eye(2)), 2, "PA")
    with pytest.raises(TypeError, match="branch"):
        L.Laurel(nn.Linear(2, 2), 2, "RW")
    with pytest.raises(ValueError, match="a_init"):
        L.Laurel(Lin(torch.eye(2)), 2, "LR", rank=1, a_init="normal")
    with pytest.raises(ValueError, match="unknown arm"):
        L.build_gpt("RW+LR+PA+", 11, L.Config.resolve("smoke"), 0)
    with pytest.raises(ConfigError, match="rank"):
        L.Config.resolve("smoke", {"rank": 100})
    with pytest.raises(ConfigError, match="pa_h"):
        L.Config.resolve("smoke", {"pa_h": "full"})


# ---------------------------------------------------------------- arms, share, measure

def test_arms_share_block_weights_for_a_seed():
    cfg = L.Config.resolve("smoke")
    base, rw = L.build_gpt(L.BASELINE, 65, cfg, 3), L.build_gpt("RW+LR", 65, cfg, 3)
    assert torch.equal(base.blocks[1].mlp[0].weight, rw.blocks[1].block.mlp[0].weight)
    deeper = L.build_gpt(L.DEEPER, 65, cfg, 3)
    assert len(deeper.blocks) == cfg.n_layer + 1


def test_bootstrap_share_hand_values_and_recompute():
    est = bootstrap_share([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
    assert (est.mean, est.ci_low, est.ci_high, est.method) == (0.5, 0.5, 0.5, "share")
    est = bootstrap_share([-1.0, 2.0, 0.5], [1.0, 2.0, 3.0])
    assert est.mean == pytest.approx(1.5 / 6.0)
    again = recompute(est.as_dict())
    assert (again.mean, again.ci_low, again.ci_high) == (est.mean, est.ci_low, est.ci_high)
    with pytest.raises(ValueError, match="positive"):
        bootstrap_share([1.0, 1.0], [1.0, -3.0])
    with pytest.raises(ValueError, match="paired"):
        bootstrap_share([1.0], [1.0, 2.0])


def fake_results(noise_rw=0.0, seeds=4):
    cfg = L.Config.resolve("smoke", {"seeds": seeds})
    rng = np.random.default_rng(0)
    gain = {L.BASELINE: 0.0, L.DEEPER: 0.10, "RW": 0.06, "LR": 0.05, "PA": 0.07,
            "RW+LR": 0.07, "RW+LR+PA": 0.08}
    params = {L.BASELINE: 1000, L.DEEPER: 1500, "RW": 1004, "LR": 1100, "PA": 1006,
              "RW+LR": 1104, "RW+LR+PA": 1300}
    lm_rows = []
    for s in range(seeds):
        base = 2.0 + rng.normal(0, 0.05)           # seed effect shared by the arms
        for arm, g in gain.items():
            noise = rng.normal(0, noise_rw) if arm == "RW" else rng.normal(0, 0.002)
            lm_rows.append({"arm": arm, "seed": s, "test_loss": base - g + noise,
                            "params": params[arm], "curve_steps": [10, 20],
                            "curve_loss": [3.0, base - g]})
    vis = []
    vgain = {L.BASELINE: 0.0, L.DEEPER: 0.02, "RW": 0.015, "RW+LR": 0.018, "RW+LR+PA": 0.0}
    for s in range(seeds):
        base = 0.8 + rng.normal(0, 0.01)
        for arm, g in vgain.items():
            vis.append({"arm": arm, "seed": s, "test_acc": base + g + rng.normal(0, 0.001) +
                        (rng.normal(0, 0.05) if arm == "RW+LR+PA" else 0), "params": 100})
    timing = bench.interleave({a: (lambda v=v: v) for a, v in
                               zip(L.LM_ARMS, [1.0, 1.5, 1.01, 1.02, 1.03, 1.02, 1.1])}, repeats=4)
    return L.Results(cfg, pd.DataFrame(lm_rows), pd.DataFrame(vis), timing)


def test_measure_on_synthetic_results():
    r = fake_results()
    out = L.measure(r)
    assert set(out) == set(L.CLAIMS)
    decide = {k: L.CLAIMS[k].rule.decide(m.estimate) for k, m in out.items()}
    assert decide["lm-deeper-beats-baseline"] == REPRODUCED
    assert out["lm-rw-beats-baseline"].estimate.mean == pytest.approx(0.06, abs=0.01)
    assert out["lm-rwlrpa-share"].estimate.mean == pytest.approx(0.8, abs=0.05)
    assert decide["lm-rwlrpa-share"] == REPRODUCED
    assert out["lm-rwlrpa-params"].estimate.mean == pytest.approx(300 / 500)
    assert out["lm-rwlr-step-time"].estimate.mean == pytest.approx(1.02)
    assert decide["lm-rwlr-step-time"] == REPRODUCED
    assert out["vision-rw-share"].estimate.mean == pytest.approx(0.75, abs=0.1)
    # a noisy arm's effect is below the seed noise: not testable, with the numbers
    assert decide["vision-rwlrpa-beats-baseline"] == NOT_TESTABLE
    assert "below the seed noise" in out["vision-rwlrpa-beats-baseline"].note
    assert decide["laurel-excluded-from-decay"] == REPRODUCED
    summary = L.lm_summary(r)
    assert summary.loc["RW", "added params"] == 4 and summary.loc["+1 layer", "step time ratio"] == 1.5
    assert L.vision_summary(r).loc["RW", "gain (points)"] == pytest.approx(1.5, abs=0.2)
    assert set(L.curves(r).columns) == {"arm", "seed", "step", "val_loss"}


def test_share_not_testable_without_a_resolved_extra_layer_gain():
    r = fake_results()
    t = r.lm.copy()
    t.loc[t.arm == L.DEEPER, "test_loss"] = t.loc[t.arm == L.BASELINE, "test_loss"].to_numpy() + \
        np.array([0.05, -0.05, 0.04, -0.04])
    est, why = L.share_estimate(t, "RW+LR+PA", "test_loss")
    assert est is None and "below the seed noise" in why


def test_run_lm_arm_smoke():
    cfg = L.Config.resolve("smoke", {"steps": 3, "warmup": 1, "eval_every": 2})
    out = L.run_lm_arm({"arm": "RW+LR+PA", "seed": 0, "cfg": cfg.asdict()})
    assert out["curve_steps"] == [2, 3] and np.isfinite(out["test_loss"])
    assert out["laurel_params"] == cfg.n_layer * L.laurel_params("RW+LR+PA", cfg.d_model, cfg.rank, cfg.k)
    assert len(out["alpha_beta"]) == cfg.n_layer
