"""LAuReL: Learned Augmented Residual Layer (Menghani, Kumar & Kumar, arXiv:2411.07501).

The residual ``x_{i+1} = f(x_i) + x_i`` becomes ``alpha f(x_i) + g(x_i, x_{i-1}, ...)``
with a learned linear ``g``. :class:`Laurel` wraps any residual block ``x + branch(x)``
(the GPT block of :mod:`effdl_lib.toolkits.lm`, the pre-activation ResNet block below)
without editing it, in five variants:

========== ===================================================== ==================
variant    output                                                extra parameters
========== ===================================================== ==================
RW         ``alpha f + beta x``, ``(alpha, beta) = 2 softmax(w)`` 2
LR         ``f + x + B A x``                                      2 r D
PA         ``f + x + sum_j gamma_j h(x_{i-j})``, j = 0..k-1       k (h = identity) or
                                                                  2 r D + k (one
                                                                  shared low-rank h)
RW+LR      ``alpha f + beta (x + B A x)``                         2 r D + 2
RW+LR+PA   ``alpha f + beta (x + sum_j gamma_j B_j A_j x_{i-j})`` 2 r k D + k + 2
========== ===================================================== ==================

Choices the paper leaves open, and ours:

- **RW is bounded and the identity at init**: ``(alpha, beta) = 2 softmax(w)`` with
  ``w = 0`` gives exactly (1, 1), the plain residual; each weight stays in (0, 2).
- **A down-projects (r x D), B up-projects (D x r), B = 0 at init** (as in LoRA), so the
  low-rank term starts at zero; A's gradient is exactly zero at step 0 and it moves from
  step 1. A is "column-orthogonal" (``A[j, i] = 1/sqrt(rD)`` when ``i mod r == j``, the
  paper's LLM init) or Xavier (its ResNet init).
- **No PA deadlock**: with identity h the gammas start at 0 (their gradient is the
  product of the upstream gradient and ``x_{i-j}``, nonzero); with low-rank h the gammas
  start at 1 and B at 0. ``gamma = 0`` together with ``B = 0`` would leave both with zero
  gradient for ever.
- **PA's history** is the input of every wrapped block of one group, reset at each forward
  pass; before the first block it is clamped to ``x_0`` (so every gamma gets a gradient).
- **LAuReL parameters are never weight-decayed** (:func:`exclude_laurel`).

Which chapter explains it: ``notebooks/07_laurel.py``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..claims import Claim, Measurement, Rule, claims_catalog, ours, paper
from ..config import ChapterConfig, OneOf, Range, require
from ..runtime import pick_device
from ..stats import bootstrap_share, mean_ci, paired_diff, point
from ..toolkits import lm

SLUG = "07_laurel"
TITLE = "LAuReL: Learned Augmented Residual Layer"
ARXIV = "2411.07501"

VARIANTS = ("RW", "LR", "PA", "RW+LR", "RW+LR+PA")
BASELINE, DEEPER = "baseline", "+1 layer"
LM_ARMS = (BASELINE, DEEPER) + VARIANTS
VISION_VARIANTS = ("RW", "RW+LR", "RW+LR+PA")      # the rows of the paper's Table 1
VISION_ARMS = (BASELINE, DEEPER) + VISION_VARIANTS
A_INITS = ("orthogonal", "xavier")
PA_H = ("identity", "lowrank")


# ---------------------------------------------------------------- the LAuReL wrapper

def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown LAuReL variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


def laurel_params(variant: str, dim: int, rank: int = 0, k: int = 3, pa_h: str = "identity") -> int:
    """Extra parameters of one LAuReL instance, from the paper's formulas (section 2,
    Table 4): RW 2; LR 2rD; PA k (identity h) or 2rD + k (one shared low-rank h);
    RW+LR 2rD + 2; RW+LR+PA 2rkD + k + 2."""
    check_variant(variant)
    return {"RW": 2, "LR": 2 * rank * dim,
            "PA": k if pa_h == "identity" else 2 * rank * dim + k,
            "RW+LR": 2 * rank * dim + 2, "RW+LR+PA": 2 * rank * k * dim + k + 2}[variant]


class History:
    """The inputs x_0, x_1, ... of the wrapped blocks of one group in this forward pass."""

    def __init__(self):
        self.xs: list[torch.Tensor] = []


def _lowrank(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``B A x`` over the feature dimension: the last one for [.., D] token tensors, the
    channel dimension for [N, C, H, W] feature maps."""
    if x.dim() == 4:
        return torch.einsum("nrhw,cr->nchw", torch.einsum("nchw,rc->nrhw", x, a), b)
    return F.linear(F.linear(x, a), b)


def _init_a(a: torch.Tensor, how: str) -> None:
    r, d = a.shape
    if how == "orthogonal":     # A[j, i] = 1/sqrt(rD) when i mod r == j (paper, LLMs)
        with torch.no_grad():
            a.zero_()
            i = torch.arange(d)
            a[i % r, i] = 1.0 / math.sqrt(r * d)
    elif how == "xavier":       # paper, ResNet
        nn.init.xavier_uniform_(a)
    else:
        raise ValueError(f"a_init must be one of {', '.join(A_INITS)}, not {how!r}")


class Laurel(nn.Module):
    """A residual block ``x + block.branch(x)`` with a LAuReL residual instead.

    ``position`` is the block's index in its group; ``history`` is shared by the group
    (needed for PA). The wrapped block is ``self.block``, unchanged."""

    def __init__(self, block: nn.Module, dim: int, variant: str, rank: int = 0, k: int = 3,
                 pa_h: str = "identity", a_init: str = "orthogonal",
                 history: History | None = None, position: int = 0):
        super().__init__()
        self.variant = check_variant(variant)
        uses_rank = variant in ("LR", "RW+LR", "RW+LR+PA") or (variant == "PA" and pa_h == "lowrank")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if uses_rank and not (isinstance(rank, int) and 1 <= rank <= dim):
            raise ValueError(f"variant {variant} needs a rank in [1, dim={dim}], got {rank!r}")
        if "PA" in variant:
            if not (isinstance(k, int) and k >= 1):
                raise ValueError(f"PA needs k >= 1 earlier activations, got {k!r}")
            if pa_h not in PA_H:
                raise ValueError(f"pa_h must be one of {', '.join(PA_H)}, not {pa_h!r}")
            if history is None:
                raise ValueError("PA needs a History shared by the blocks of its group "
                                 "(use laurel.wrap)")
        if not callable(getattr(block, "branch", None)):
            raise TypeError(f"{type(block).__name__} has no branch(x): not a residual block")
        self.block, self.dim, self.rank, self.k, self.pa_h = block, dim, rank, k, pa_h
        self.history, self.position = history, position
        if variant.startswith("RW"):
            self.rw_logits = nn.Parameter(torch.zeros(2))        # 2 softmax(0) = (1, 1)
        if variant in ("LR", "RW+LR"):
            self.lr_A = nn.Parameter(torch.empty(rank, dim))
            self.lr_B = nn.Parameter(torch.zeros(dim, rank))      # B = 0: LR starts at 0
            _init_a(self.lr_A, a_init)
        if variant == "PA":
            if pa_h == "identity":
                self.pa_gamma = nn.Parameter(torch.zeros(k))      # x_{i-j} != 0 moves it
            else:
                self.pa_gamma = nn.Parameter(torch.ones(k))       # B = 0 holds the term at 0
                self.pa_A = nn.Parameter(torch.empty(rank, dim))
                self.pa_B = nn.Parameter(torch.zeros(dim, rank))
                _init_a(self.pa_A, a_init)
        if variant == "RW+LR+PA":                                 # eq. 6: one pair per j
            self.pa_gamma = nn.Parameter(torch.ones(k))
            self.pa_A = nn.Parameter(torch.empty(k, rank, dim))
            self.pa_B = nn.Parameter(torch.zeros(k, dim, rank))
            for j in range(k):
                _init_a(self.pa_A.data[j], a_init)

    def _past(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x_i, x_{i-1}, ..., x_{i-k+1}], clamped to x_0 before the first block."""
        h = self.history
        if self.position == 0:
            h.xs = []
        if len(h.xs) != self.position:
            raise RuntimeError(f"PA block {self.position} ran after {len(h.xs)} blocks of its "
                               f"group: the blocks must run in order in one forward pass")
        h.xs.append(x)
        return [h.xs[max(self.position - j, 0)] for j in range(self.k)]

    def forward(self, x):
        f = self.block.branch(x)
        v = self.variant
        if v in ("LR", "RW+LR"):
            g = x + _lowrank(x, self.lr_A, self.lr_B)
        elif v == "PA":
            past = self._past(x)
            if self.pa_h == "identity":
                g = x + sum(self.pa_gamma[j] * past[j] for j in range(self.k))
            else:  # one shared h: sum_j gamma_j h(x_{i-j}) = h(sum_j gamma_j x_{i-j})
                mix = sum(self.pa_gamma[j] * past[j] for j in range(self.k))
                g = x + _lowrank(mix, self.pa_A, self.pa_B)
        elif v == "RW+LR+PA":
            past = self._past(x)
            g = x + sum(self.pa_gamma[j] * _lowrank(past[j], self.pa_A[j], self.pa_B[j])
                        for j in range(self.k))
        else:  # RW
            g = x
        if v.startswith("RW"):
            alpha, beta = 2 * torch.softmax(self.rw_logits, 0)
            return alpha * f + beta * g
        return f + g

    def extra_repr(self) -> str:
        return (f"variant={self.variant}, dim={self.dim}, rank={self.rank}, k={self.k}, "
                f"pa_h={self.pa_h}, position={self.position}")


def wrap(blocks: nn.ModuleList, dim: int, variant: str, rank: int = 0, k: int = 3,
         pa_h: str = "identity", a_init: str = "orthogonal") -> nn.ModuleList:
    """Wrap every block of ``blocks`` (one group of equal-shape residual blocks, run in
    order) with a LAuReL residual, in place (:func:`lm.wrap_residuals`). Parameters are
    created after the blocks', so a seed gives the same block weights with or without
    LAuReL."""
    history = History() if "PA" in check_variant(variant) else None
    return lm.wrap_residuals(blocks, lambda block, i: Laurel(
        block, dim, variant, rank, k, pa_h, a_init, history, i))


def laurel_modules(model: nn.Module) -> list[Laurel]:
    return [m for m in model.modules() if isinstance(m, Laurel)]


def own_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The LAuReL parameters of ``model`` (alpha/beta logits, A, B, gamma), by name."""
    own = {id(p) for m in laurel_modules(model) for p in m.parameters(recurse=False)}
    return [(n, p) for n, p in model.named_parameters() if id(p) in own]


def exclude_laurel(model: nn.Module):
    """The ``exclude(name, param)`` predicate for :func:`lm.param_groups`: True for
    LAuReL parameters, which are kept out of weight decay."""
    own = {id(p) for _, p in own_params(model)}
    return lambda name, p: id(p) in own


# ---------------------------------------------------------------- the language-model arms

def build_gpt(arm: str, vocab_size: int, cfg: "Config", seed: int) -> nn.Module:
    """The model of one LM arm: the baseline (``cfg.n_layer`` blocks), one more block, or
    the baseline's blocks wrapped with a LAuReL variant (same block weights for a seed)."""
    if arm not in LM_ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {', '.join(LM_ARMS)}")
    torch.manual_seed(seed)
    n_layer = cfg.n_layer + (arm == DEEPER)
    model = lm.GPT(lm.GPTConfig(vocab_size, cfg.block, n_layer, cfg.d_model, cfg.n_head))
    if arm in VARIANTS:
        wrap(model.blocks, cfg.d_model, arm, cfg.rank, cfg.k, cfg.pa_h, "orthogonal")
    return model


@functools.lru_cache(maxsize=2)
def lm_data(val: float = 0.05, test: float = 0.05):
    """Tiny-shakespeare as character ids, split contiguously 90 / 5 / 5."""
    return lm.corpus_splits("tinyshakespeare", "char", val=val, test=test)


def run_lm_arm(job: Mapping) -> dict:
    """Train one (arm, seed) and return its test loss, validation curve and sizes.
    A picklable function of a dict, for :func:`effdl_lib.toolkits.grid.sweep`."""
    cfg = Config(**job["cfg"])
    torch.set_num_threads(cfg.threads)
    tok, sp = lm_data()
    model = build_gpt(job["arm"], tok.vocab_size, cfg, job["seed"]).to(pick_device(cfg.device))
    val_starts = lm.fixed_windows(sp.val, cfg.block, cfg.eval_windows, seed=1)
    test_starts = lm.fixed_windows(sp.test, cfg.block, cfg.test_windows, seed=2)
    res = lm.train(model, sp.train, steps=cfg.steps, batch=cfg.batch, block=cfg.block,
                   lr=cfg.lr, seed=1000 + job["seed"], warmup=cfg.warmup,
                   weight_decay=cfg.weight_decay, exclude=exclude_laurel(model),
                   eval_ids=sp.val, eval_starts=val_starts, eval_every=cfg.eval_every,
                   desc=f"{job['arm']} s{job['seed']}")
    rw = [(2 * torch.softmax(m.rw_logits.detach(), 0)).tolist()
          for m in laurel_modules(model) if hasattr(m, "rw_logits")]
    return {"test_loss": lm.evaluate(model, sp.test, test_starts, cfg.block),
            "val_loss": res.eval_loss[-1], "curve_steps": res.eval_steps,
            "curve_loss": res.eval_loss, "params": lm.n_params(model),
            "laurel_params": sum(p.numel() for _, p in own_params(model)),
            "alpha_beta": rw, "seconds": res.seconds}


# ---------------------------------------------------------------- the vision analogue

class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016): ``x + branch(x)`` with
    ``branch = conv(relu(bn(conv(relu(bn(x))))))``."""

    def __init__(self, c: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)

    def branch(self, x):
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))

    def forward(self, x):
        return x + self.branch(x)


class PreActDown(nn.Module):
    """Stride-2 block with a 1x1 projection shortcut (not a plain residual: not wrapped)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.short = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)

    def forward(self, x):
        h = F.relu(self.bn1(x))
        return self.short(h) + self.conv2(F.relu(self.bn2(self.conv1(h))))


class PreActResNet(nn.Module):
    """A small pre-activation ResNet for 28x28 grayscale images: a stride-2 stem
    (14x14), ``n1`` blocks of ``width`` channels, a stride-2 block (7x7, 2 x width), ``n2``
    blocks, BN-ReLU, global average pooling, a linear classifier."""

    def __init__(self, width: int = 16, n1: int = 2, n2: int = 2, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False)
        self.stage1 = nn.ModuleList(PreActBlock(width) for _ in range(n1))
        self.down = PreActDown(width, 2 * width)
        self.stage2 = nn.ModuleList(PreActBlock(2 * width) for _ in range(n2))
        self.bn, self.fc = nn.BatchNorm2d(2 * width), nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.stem(x)
        for b in self.stage1:
            x = b(x)
        x = self.down(x)
        for b in self.stage2:
            x = b(x)
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


def build_resnet(arm: str, cfg: "Config", seed: int) -> PreActResNet:
    """Baseline ResNet, one more block in the second stage, or the baseline with every
    identity-shortcut block wrapped (one LAuReL group per stage; Xavier A, as the paper
    does for ResNet)."""
    if arm not in VISION_ARMS:
        raise ValueError(f"unknown vision arm {arm!r}; choose one of {', '.join(VISION_ARMS)}")
    torch.manual_seed(seed)
    w = cfg.vision_width
    model = PreActResNet(w, cfg.vision_blocks, cfg.vision_blocks + (arm == DEEPER))
    if arm in VARIANTS:
        wrap(model.stage1, w, arm, cfg.vision_rank, cfg.k, "identity", "xavier")
        wrap(model.stage2, 2 * w, arm, cfg.vision_rank, cfg.k, "identity", "xavier")
    return model


FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


@functools.lru_cache(maxsize=2)
def vision_data(n_train: int, n_test: int):
    """The first ``n_train`` Fashion-MNIST training images and ``n_test`` test images,
    standardised, as [n, 1, 28, 28] float tensors."""
    def prep(split, n):
        x, y = data.load_image_set("fashion", split)
        x = (torch.from_numpy(np.array(x[:n], np.float32)) / 255.0 - FASHION_MEAN) / FASHION_STD
        return x[:, None], torch.from_numpy(np.array(y[:n]))
    return prep("train", n_train), prep("test", n_test)


def run_vision_arm(job: Mapping) -> dict:
    """Train one (vision arm, seed) with AdamW + warm-up/cosine; test accuracy."""
    cfg = Config(**job["cfg"])
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    (xtr, ytr), (xte, yte) = vision_data(cfg.vision_train, cfg.vision_test)
    xtr, ytr, xte, yte = (t.to(device) for t in (xtr, ytr, xte, yte))
    model = build_resnet(job["arm"], cfg, job["seed"]).to(device)
    opt = lm.make_optimizer(model, cfg.vision_lr, 5e-4, exclude_laurel(model))
    steps = cfg.vision_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lm.warmup_cosine(s, steps // 10, steps))
    gen = torch.Generator().manual_seed(2000 + job["seed"])
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xtr), (cfg.vision_batch,), generator=gen).to(device)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xte[i:i + 500]).argmax(1) for i in range(0, len(xte), 500)])
    return {"test_acc": float((pred == yte).float().mean()), "params": lm.n_params(model),
            "laurel_params": sum(p.numel() for _, p in own_params(model))}


# ---------------------------------------------------------------- timing and the floor

def block_flops_per_token(cfg: "Config") -> float:
    """Forward multiply-adds x 2 of one GPT block per token: the four d x d attention
    matrices, the 2 x 4d x d MLP, and causal attention scores (about block/2 keys)."""
    d, t = cfg.d_model, cfg.block
    return 2 * (12 * d * d) + 2 * 2 * d * (t / 2)


def laurel_flops_per_token(variant: str, cfg: "Config") -> float:
    """Forward FLOPs LAuReL adds per token and block: the low-rank products (2 x 2rD per
    pair) and the element-wise scalings and sums (a few D)."""
    d, r, k = cfg.d_model, cfg.rank, cfg.k
    lowrank = 2 * 2 * r * d
    return {"RW": 3 * d, "LR": lowrank + d, "PA": 2 * k * d + d,
            "RW+LR": lowrank + 4 * d, "RW+LR+PA": k * lowrank + 2 * k * d + 4 * d}[check_variant(variant)]


def time_arms(cfg: "Config", vocab_size: int, train_ids: torch.Tensor):
    """Seconds per training step of every LM arm, interleaved (lm.time_steps)."""
    device = pick_device(cfg.device)
    models = {arm: build_gpt(arm, vocab_size, cfg, seed=0).to(device) for arm in LM_ARMS}
    return lm.time_steps(models, train_ids, batch=cfg.batch, block=cfg.block,
                         steps_per_repeat=cfg.time_steps, repeats=cfg.time_repeats, warmup=1)


# ---------------------------------------------------------------- the paper's numbers

#: C4 ablation (paper, section 3.3 table): params (M), test loss, step time (s)
PAPER_C4 = pd.DataFrame(
    [("baseline 24 layers", 157.20, 3.0159, 0.095), ("baseline 28 layers", 179.23, 2.9963, 0.105),
     ("RW", 157.20, 2.9557, 0.095), ("LR", 158.40, 2.9624, 0.098),
     ("PA", 157.22, 2.9512, 0.100), ("RW+LR", 158.40, 2.9531, 0.099),
     ("RW+LR+PA", 160.83, 2.9499, 0.104)],
    columns=["arm", "params (M)", "test loss", "step (s)"]).set_index("arm")

#: ResNet-50 on ImageNet, Table 1 (5 trials): top-1 accuracy (%), added params (%)
PAPER_TABLE1 = pd.DataFrame(
    [("baseline", 74.95, 0.0), ("+1 layer", 75.20, 4.37), ("RW", 75.10, 0.003),
     ("RW+LR", 75.20, 1.68), ("RW+LR+PA", 75.25, 2.40)],
    columns=["arm", "top-1 (%)", "added params (%)"]).set_index("arm")


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class Config(ChapterConfig):
    seeds: int
    steps: int                 # LM training steps per arm
    n_layer: int = 2           # baseline depth; the "+1 layer" arm has n_layer + 1
    d_model: int = 64
    n_head: int = 4
    block: int = 64
    batch: int = 32
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.1
    rank: int = 8              # LR and RW+LR+PA rank in the LM
    k: int = 3                 # PA: earlier activations mixed
    pa_h: str = "identity"     # PA's h in the LM (RW+LR+PA always uses low-rank pairs)
    eval_every: int = 50
    eval_windows: int = 32     # validation windows for the loss curves
    test_windows: int = 256    # fixed test windows for the final loss
    time_steps: int = 3
    time_repeats: int = 15
    vision_steps: int = 200
    vision_train: int = 10_000
    vision_test: int = 5_000
    vision_batch: int = 32
    vision_width: int = 16
    vision_blocks: int = 2     # identity blocks per stage in the baseline
    vision_rank: int = 4
    vision_lr: float = 3e-3
    workers: int = 2           # processes for the seeds (1: in this process)

    CONSTRAINTS: ClassVar[dict] = {
        "seeds": Range(1, 50), "steps": Range(1, 100_000), "n_layer": Range(1, 24),
        "d_model": Range(8, 2048), "n_head": Range(1, 64), "block": Range(8, 2048),
        "batch": Range(1, 4096), "lr": Range(0, 1, lo_open=True), "warmup": Range(0, 100_000),
        "weight_decay": Range(0, 1), "rank": Range(1, 1024), "k": Range(1, 16),
        "pa_h": OneOf(PA_H), "eval_every": Range(1, 100_000), "eval_windows": Range(1, 10_000),
        "test_windows": Range(1, 100_000), "time_steps": Range(1, 100),
        "time_repeats": Range(2, 100), "vision_steps": Range(1, 100_000),
        "vision_train": Range(100, 60_000), "vision_test": Range(100, 10_000),
        "vision_batch": Range(1, 4096), "vision_width": Range(4, 512),
        "vision_blocks": Range(1, 16), "vision_rank": Range(1, 512),
        "vision_lr": Range(0, 1, lo_open=True), "workers": Range(1, 64)}

    def validate(self):
        require(self.d_model % self.n_head == 0,
                f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        require(self.rank <= self.d_model, f"rank={self.rank} exceeds d_model={self.d_model}")
        require(self.vision_rank <= self.vision_width,
                f"vision_rank={self.vision_rank} exceeds vision_width={self.vision_width}")
        require(self.warmup <= self.steps, f"warmup={self.warmup} exceeds steps={self.steps}")

    @classmethod
    def profiles(cls):
        return {
            "smoke": cls(seeds=2, steps=15, block=32, batch=8, warmup=3, eval_every=5,
                         eval_windows=8, test_windows=32, time_steps=1, time_repeats=3,
                         vision_steps=10, vision_train=500, vision_test=200, vision_batch=16,
                         workers=1),
            "cpu": cls(seeds=4, steps=200, warmup=20, eval_every=40, vision_steps=120,
                       vision_train=6000, vision_test=4000, time_repeats=10),
            "gpu": cls(seeds=8, steps=3000, n_layer=4, d_model=128, block=128, rank=16,
                       warmup=200, eval_every=200, test_windows=1024, vision_steps=2000,
                       vision_train=60_000, vision_test=10_000, vision_batch=128,
                       vision_width=32, vision_rank=8, workers=1),
        }


# ---------------------------------------------------------------- results and measures

@dataclass
class Results:
    cfg: Config
    lm: pd.DataFrame         # one row per (arm, seed)
    vision: pd.DataFrame     # one row per (arm, seed)
    timing: object           # bench.BenchResult of the LM arms


def run_jobs(fn, arms, cfg: Config, desc: str, client=None) -> pd.DataFrame:
    """Every (arm, seed), seeds paired across arms; over ``cfg.workers`` processes with
    :func:`effdl_lib.toolkits.grid.sweep` (one thread each; on ``client`` when given), in
    this process when ``cfg.workers`` is 1."""
    from ..toolkits.grid import sweep
    plain = {**cfg.asdict(), "threads": 1}
    jobs = [{"arm": a, "seed": s, "cfg": plain} for s in range(cfg.seeds) for a in arms]
    table = sweep(fn, jobs, key=lambda j: f"{j['arm'].replace('+', 'p').replace(' ', '_')}-{j['seed']}",
                  mode="serial" if cfg.workers == 1 else "dask", workers=cfg.workers,
                  client=client, desc=desc)
    return table.drop(columns=["cfg"])


def run(cfg: Config) -> Results:
    """Every LM arm and vision arm on every seed (paired), then the interleaved step
    timing of the LM arms. The data are read here too, so the record lists them."""
    import contextlib
    from ..toolkits.grid import dask_client
    tok, sp = lm_data()
    vision_data(cfg.vision_train, cfg.vision_test)
    with contextlib.ExitStack() as stack:   # one cluster for both sweeps
        client = stack.enter_context(dask_client(cfg.workers)) if cfg.workers > 1 else None
        lm_table = run_jobs(run_lm_arm, LM_ARMS, cfg, "LM arms", client)
        vision_table = run_jobs(run_vision_arm, VISION_ARMS, cfg, "vision arms", client)
    return Results(cfg, lm_table, vision_table, time_arms(cfg, tok.vocab_size, sp.train))


def paper_vs_ours_lm(summary: pd.DataFrame) -> pd.DataFrame:
    """The C4 table's columns as gains over the 24-layer baseline, beside ours over our
    baseline: added parameters (%), loss gain (nats), share of the deeper arm's gain
    (the paper's deeper arm has 4 more layers, ours 1), step-time ratio."""
    c4, base = PAPER_C4, PAPER_C4.loc["baseline 24 layers"]
    names = {BASELINE: "baseline 24 layers", DEEPER: "baseline 28 layers"}
    deeper_gain = base["test loss"] - c4.loc["baseline 28 layers", "test loss"]
    rows = []
    for arm in LM_ARMS:
        pr = c4.loc[names.get(arm, arm)]
        gain = base["test loss"] - pr["test loss"]
        ours = summary.loc[arm]
        rows.append({"arm": arm,
                     "paper: added params (%)": 100 * (pr["params (M)"] / base["params (M)"] - 1),
                     "ours: added params (%)": ours["added params (%)"],
                     "paper: loss gain": gain, "ours: loss gain": ours.get("gain", 0.0),
                     "paper: share of deeper gain": gain / deeper_gain if arm != BASELINE else None,
                     "ours: share of deeper gain": ours.get("share of +1 gain"),
                     "paper: step ratio": pr["step (s)"] / base["step (s)"],
                     "ours: step ratio": ours["step time ratio"]})
    return pd.DataFrame(rows).set_index("arm")


def paper_vs_ours_vision(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 1 (ResNet-50, ImageNet top-1) beside our small ResNet (Fashion-MNIST)."""
    t1 = PAPER_TABLE1
    rows = []
    for arm in VISION_ARMS:
        ours = summary.loc[arm]
        rows.append({"arm": arm,
                     "paper: gain (points)": t1.loc[arm, "top-1 (%)"] - t1.loc[BASELINE, "top-1 (%)"],
                     "ours: gain (points)": ours.get("gain (points)", 0.0),
                     "paper: added params (%)": t1.loc[arm, "added params (%)"],
                     "ours: added params (%)": ours["added params (%)"]})
    return pd.DataFrame(rows).set_index("arm")


def _wide(table: pd.DataFrame, value: str) -> pd.DataFrame:
    return table.pivot_table(index="seed", columns="arm", values=value)


def gains(table: pd.DataFrame, value: str, better: str = "lower") -> pd.DataFrame:
    """Per seed, each arm's gain over the baseline (loss: baseline - arm; accuracy:
    arm - baseline), so a gain is positive when the arm is better."""
    w = _wide(table, value)
    sign = 1.0 if better == "lower" else -1.0
    return w.drop(columns=[BASELINE]).apply(lambda col: sign * (w[BASELINE] - col))


def share_estimate(table: pd.DataFrame, arm: str, value: str, better: str = "lower"):
    """Share of the +1-layer gain that ``arm`` reaches (paired bootstrap), or None with
    the reason when the +1-layer gain itself is not resolved (its 95 % CI includes 0)."""
    g = gains(table, value, better)
    deeper = mean_ci(g[DEEPER].to_numpy())
    if deeper.ci_low <= 0:
        return None, (f"the +1-layer gain is below the seed noise ({deeper.mean:+.4f}, 95% CI "
                      f"[{deeper.ci_low:+.4f}, {deeper.ci_high:+.4f}]): no share to measure")
    return bootstrap_share(g[arm].to_numpy(), g[DEEPER].to_numpy()), ""


def resolved_diff(a, b, what: str) -> Measurement:
    """Paired difference a - b; an effect below the seed noise (95 % CI includes 0) is
    reported as not testable at this scale, with the numbers in the note."""
    est = paired_diff(a, b)
    if est.ci_low <= 0 <= est.ci_high:
        return Measurement(None, f"{what}: {est.mean:+.4f}, 95% CI [{est.ci_low:+.4f}, "
                                 f"{est.ci_high:+.4f}], n={est.n}: below the seed noise")
    return Measurement(est, f"{what}, paired by seed")


def lm_summary(r: Results) -> pd.DataFrame:
    """Per LM arm: test loss (mean, CI), gain over the baseline, share of the +1-layer
    gain, added parameters, step-time ratio (interleaved) and the FLOP floor."""
    w = _wide(r.lm, "test_loss")
    base_params = int(r.lm[r.lm.arm == BASELINE].params.iloc[0])
    block_f = block_flops_per_token(r.cfg)
    rows = []
    for arm in LM_ARMS:
        loss = mean_ci(w[arm].to_numpy())
        row = {"arm": arm, "test loss": loss.mean, "loss CI half": (loss.ci_high - loss.ci_low) / 2}
        if arm != BASELINE:
            d = paired_diff(w[BASELINE].to_numpy(), w[arm].to_numpy())
            row.update({"gain": d.mean, "gain CI low": d.ci_low, "gain CI high": d.ci_high})
        if arm in VARIANTS:
            est, _ = share_estimate(r.lm, arm, "test_loss")
            if est is not None:
                row.update({"share of +1 gain": est.mean, "share CI low": est.ci_low,
                            "share CI high": est.ci_high})
            row["FLOP floor"] = 1 + laurel_flops_per_token(arm, r.cfg) / block_f
        params = int(r.lm[r.lm.arm == arm].params.iloc[0])
        row["added params"] = params - base_params
        row["added params (%)"] = 100 * (params - base_params) / base_params
        t = r.timing.ratio(arm, BASELINE) if arm != BASELINE else None
        row["step time ratio"] = t.mean if t else 1.0
        row["step time ratio (min)"] = r.timing.min_ratio(arm, BASELINE) if t else 1.0
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def vision_summary(r: Results) -> pd.DataFrame:
    w = _wide(r.vision, "test_acc")
    base_params = int(r.vision[r.vision.arm == BASELINE].params.iloc[0])
    rows = []
    for arm in VISION_ARMS:
        acc = mean_ci(100 * w[arm].to_numpy())
        params = int(r.vision[r.vision.arm == arm].params.iloc[0])
        row = {"arm": arm, "accuracy (%)": acc.mean, "CI half": (acc.ci_high - acc.ci_low) / 2,
               "added params": params - base_params,
               "added params (%)": 100 * (params - base_params) / base_params}
        if arm != BASELINE:
            d = paired_diff(100 * w[arm].to_numpy(), 100 * w[BASELINE].to_numpy())
            row.update({"gain (points)": d.mean, "gain CI low": d.ci_low, "gain CI high": d.ci_high})
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def curve_gains(r: Results) -> pd.DataFrame:
    """Per (arm, step): the validation-loss gain over the baseline (baseline - arm),
    mean and 95 % t-interval over paired seeds: is the effect there early (faster
    optimisation) or does it grow with training (capacity)?"""
    c = curves(r)
    wide = c.pivot_table(index=["step", "seed"], columns="arm", values="val_loss")
    rows = []
    for arm in LM_ARMS[1:]:
        for step, g in wide.groupby(level="step"):
            d = paired_diff(g[BASELINE].to_numpy(), g[arm].to_numpy())
            rows.append({"arm": arm, "step": step, **d.as_dict()})
    return pd.DataFrame(rows)


def curves(r: Results) -> pd.DataFrame:
    """Validation loss against steps, one row per (arm, seed, step)."""
    rows = [{"arm": row.arm, "seed": row.seed, "step": s, "val_loss": v}
            for row in r.lm.itertuples() for s, v in zip(row.curve_steps, row.curve_loss)]
    return pd.DataFrame(rows)


_C4 = PAPER_C4["test loss"]


def _c4_gain(arm: str) -> str:
    return f"{_C4['baseline 24 layers'] - _C4[arm]:+.4f} nats (C4 table, 24 layers)"


CLAIMS = claims_catalog(
    Claim("lm-deeper-beats-baseline",
          "Positive control: one more layer lowers the language model's test loss.",
          "test loss, baseline - (+1 layer), nats, paired by seed",
          Rule(0.0, "above"), origin=paper("C4 ablation table (24 vs 28 layers)"),
          paper_value=f"{_C4['baseline 24 layers'] - _C4['baseline 28 layers']:+.4f} nats for +4 layers"),
    *[Claim(f"lm-{v.lower().replace('+', '')}-beats-baseline",
            f"LAuReL-{v} lowers the test loss of the same-depth baseline.",
            f"test loss, baseline - {v}, nats, paired by seed",
            Rule(0.0, "above"), origin=paper("C4 ablation table"), paper_value=_c4_gain(v))
      for v in VARIANTS],
    Claim("lm-rwlrpa-share",
          "RW+LR+PA reaches at least 60 % of the gain of one extra layer.",
          "share of the +1-layer test-loss gain, paired bootstrap over seeds",
          Rule(0.6, "above"), origin=paper("Table 1 and abstract (60 % of the extra layer's gain)"),
          paper_value="RW: 0.15/0.25 = 60 % (ResNet-50, Table 1); RW+LR+PA 120 %"),
    Claim("lm-rwlrpa-params",
          "RW+LR+PA adds a fraction of the parameters of one extra layer.",
          "added parameters of RW+LR+PA / added parameters of +1 layer (deterministic)",
          Rule(1.0, "below", min_n=1), origin=paper("Table 1; C4 table"),
          paper_value="2.40 % / 4.37 % = 0.55 (ResNet-50); 3.63M / (22.03M / 4) = 0.66 (C4)"),
    Claim("lm-rwlr-step-time",
          "RW+LR costs at most a few percent of step time.",
          "step time RW+LR / baseline (fastest step of each repeat), interleaved repeats, "
          "paired bootstrap",
          Rule(1.05, "below"), origin=paper("C4 table; LLM-4B latency (section 3.2)"),
          paper_value="0.099/0.095 = 1.042 (C4); +1-2 % (LLM-4B)"),
    Claim("vision-deeper-beats-baseline",
          "Positive control (vision): one more block raises test accuracy.",
          "test accuracy, (+1 block) - baseline, points, paired by seed",
          Rule(0.0, "above"), origin=paper("Table 1"), paper_value="+0.25 points (ResNet-50)"),
    Claim("vision-rw-share",
          "LAuReL-RW reaches at least 60 % of the extra block's accuracy gain.",
          "share of the +1-block accuracy gain, paired bootstrap over seeds",
          Rule(0.6, "above"), origin=paper("Table 1; abstract"),
          paper_value="0.15 / 0.25 = 60 %"),
    Claim("vision-rwlrpa-beats-baseline",
          "LAuReL-RW+LR+PA raises the same-depth ResNet's test accuracy.",
          "test accuracy, RW+LR+PA - baseline, points, paired by seed",
          Rule(0.0, "above"), origin=paper("Table 1"), paper_value="+0.30 points (ResNet-50)"),
    Claim("laurel-excluded-from-decay",
          "Every LAuReL parameter is outside the weight-decay group and every one moves "
          "in training (no deadlock).",
          "share of LAuReL tensors that are undecayed and changed after 3 steps, all variants",
          Rule(0.999, "above", min_n=1), origin=ours("the note's traps: decay and PA deadlock")),
)


def no_stuck_parameters(steps: int = 3, seed: int = 0) -> float:
    """Share of LAuReL parameter tensors, over every variant wrapping a tiny GPT, that
    are in the no-decay group and have changed after ``steps`` AdamW steps."""
    good = total = 0
    for v in VARIANTS:
        torch.manual_seed(seed)
        model = lm.GPT(lm.GPTConfig(17, block=8, n_layer=3, d_model=16, n_head=2))
        wrap(model.blocks, 16, v, rank=4, k=3, pa_h="lowrank" if v == "PA" else "identity")
        groups = lm.param_groups(model, 0.1, exclude_laurel(model))
        undecayed = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
        before = {n: p.detach().clone() for n, p in own_params(model)}
        opt = lm.make_optimizer(model, 1e-2, 0.1, exclude_laurel(model))
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, 17, (500,), generator=gen)
        for _ in range(steps):
            x, y = lm.random_windows(ids, 8, 4, gen)
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for n, p in own_params(model):
            total += 1
            good += int(n in undecayed and not torch.equal(before[n], p.detach()))
    return good / total


def measure(r: Results) -> dict[str, Measurement]:
    """One estimate per claim: LM test losses and ResNet accuracies paired by seed; an
    effect whose 95 % CI includes 0 is below the seed noise (not testable here)."""
    w, out = _wide(r.lm, "test_loss"), {}
    base = w[BASELINE].to_numpy()
    out["lm-deeper-beats-baseline"] = resolved_diff(base, w[DEEPER].to_numpy(), "loss gain of +1 layer")
    for v in VARIANTS:
        out[f"lm-{v.lower().replace('+', '')}-beats-baseline"] = resolved_diff(
            base, w[v].to_numpy(), f"loss gain of {v}")
    est, why = share_estimate(r.lm, "RW+LR+PA", "test_loss")
    out["lm-rwlrpa-share"] = Measurement(est, why or "share of the +1-layer loss gain")
    p = r.lm.groupby("arm").params.first()
    out["lm-rwlrpa-params"] = Measurement(
        point((p["RW+LR+PA"] - p[BASELINE]) / (p[DEEPER] - p[BASELINE])),
        f"{p['RW+LR+PA'] - p[BASELINE]} vs {p[DEEPER] - p[BASELINE]} added parameters")
    floor = 1 + laurel_flops_per_token("RW+LR", r.cfg) / block_flops_per_token(r.cfg)
    gate = r.timing.gate()
    out["lm-rwlr-step-time"] = Measurement(
        r.timing.ratio("RW+LR", BASELINE),
        f"{r.timing.repeats} interleaved repeats, {r.cfg.time_steps} steps each, one thread; "
        f"FLOP floor {floor:.3f}; " + (gate or "machine quiet"))
    vw = _wide(r.vision, "test_acc") * 100
    out["vision-deeper-beats-baseline"] = resolved_diff(
        vw[DEEPER].to_numpy(), vw[BASELINE].to_numpy(), "accuracy gain of +1 block (points)")
    est, why = share_estimate(r.vision, "RW", "test_acc", better="higher")
    out["vision-rw-share"] = Measurement(est, why or "share of the +1-block accuracy gain")
    out["vision-rwlrpa-beats-baseline"] = resolved_diff(
        vw["RW+LR+PA"].to_numpy(), vw[BASELINE].to_numpy(), "accuracy gain of RW+LR+PA (points)")
    out["laurel-excluded-from-decay"] = Measurement(point(no_stuck_parameters()),
                                                    "tiny GPT, every variant, 3 AdamW steps")
    return out


def plain_records(table: pd.DataFrame) -> list[dict]:
    """A summary table as JSON-ready rows for the record (NaN and missing as None)."""
    return [{k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
             for k, v in row.items()} for row in table.reset_index().to_dict("records")]
