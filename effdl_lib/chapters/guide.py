"""GUIDE: Guided Initialization and Distillation of Embeddings (Trinh, Menghani and Vee,
2025, arXiv:2510.06502). Explained in ``notebooks/08_guide.py``.

The student is made to match the teacher *in parameter space* before it trains:

- **Embeddings.** ``M`` (d_T x d_S) holds the top d_S principal directions of the
  teacher's token-embedding table E_T (:func:`pca_projection`); the student's table is
  ``E_S = E_T M`` and its positional table ``P_S = P_T M`` (the same M). The student's
  residual stream starts as the projection ``x_S = M^T x_T`` of the teacher's.
- **First block.** The teacher's first block is folded through the same M
  (:func:`guide_init`): linear maps that read the stream become ``W diag(g) M`` (the
  norm's gain ``g`` folded in), maps that write to it become ``M^T W``; heads and MLP
  units are cut to the student's size by uniform selection (:func:`uniform_indices`,
  evenly spaced, as in Xu et al. 2024's weight selection).
- Everything else keeps the student's default initialisation; the student then trains
  with cross-entropy ("GUIDE") or cross-entropy plus distillation ("GUIDE + KD",
  :func:`lm_kd_loss`).

The language-model stack (BPE, the GPT, AdamW with warm-up and cosine, evaluation and
interleaved step timing) is ``effdl_lib.toolkits.lm``, shared with chapter 07; the
distillation term is the toolkit's :func:`effdl_lib.toolkits.distill.kd_loss`.

Choices the paper's text (not readable offline) did not fix, all ours: PCA uncentred by
default (``centered=True`` takes the directions of the centred table but still projects
the raw rows, so the student's stream stays a linear projection of the teacher's); each
component's sign makes its largest-magnitude loading positive; LayerNorm / RMSNorm gains
are folded into the next linear layer with the scale ``sqrt(d_T / d_S)`` (exact for
RMSNorm, approximate for LayerNorm, whose mean subtraction does not commute with M; the
teacher's own mean subtraction is folded in as ``P_T M``), the norm's bias goes into the
next layer's bias if it has one, else into the student's norm bias by least squares;
uniform selection rounds half up; no rescaling of the selected heads or units; a tied
head follows the embedding table, an untied head keeps its default initialisation.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import data as _data
from ..claims import Claim, Measurement, Rule, Untestable, claims_catalog, ours, paper
from ..config import ChapterConfig, OneOf, Range, require
from ..runtime import pick_device
from ..stats import Estimate, bootstrap_share, mean_ci, paired_diff
from ..toolkits import distill as D
from ..toolkits import lm

SLUG = "08_guide"
TITLE = "GUIDE: Guided Initialization and Distillation of Embeddings"
ARXIV = "2510.06502"

SCRATCH, EMB, GUIDE, KD, GUIDE_KD = "scratch", "guide_emb", "guide", "kd", "guide_kd"
ARMS = (SCRATCH, EMB, GUIDE, KD, GUIDE_KD)
TUNE_SEED = 100  # the seed of the KD tuning runs: never one of the evaluated seeds


# ---------------------------------------------------------------- PCA of the embedding table

@dataclass(frozen=True)
class PCA:
    """Top-d principal directions of a table (rows = tokens).

    ``components`` is M (d_T x d, orthonormal columns); ``mean`` the row mean (zeros
    when uncentred); ``explained`` the share of the table's (centred) sum of squares
    along each direction, so ``explained.sum()`` is the explained variance of the rank-d
    reconstruction and ``1 - explained.sum()`` its relative squared error."""
    components: torch.Tensor
    mean: torch.Tensor
    explained: torch.Tensor
    centered: bool

    @property
    def d(self) -> int:
        return self.components.shape[1]

    @property
    def explained_total(self) -> float:
        return float(self.explained.sum())

    def project(self, table: torch.Tensor) -> torch.Tensor:
        """``table @ M``: the raw rows projected (the student's table), in both modes."""
        return table.to(self.components.dtype) @ self.components

    def reconstruct(self, table: torch.Tensor) -> torch.Tensor:
        """``mean + (table - mean) M M^T``: the rank-d reconstruction."""
        t = table.to(self.components.dtype)
        return self.mean + (t - self.mean) @ self.components @ self.components.T


def pca_projection(table: torch.Tensor, d: int, centered: bool = False) -> PCA:
    """The top ``d`` principal directions of ``table`` (n x d_T), by SVD in float64.

    Uncentred (default): directions of the raw rows (maximal retained energy
    ``||E M||^2``); centred: directions of ``E - mean``. Signs are deterministic: each
    column of M has its largest-magnitude entry positive (the first one on a tie)."""
    if not isinstance(table, torch.Tensor) or table.ndim != 2:
        raise ValueError(f"the table must be a 2-D tensor (tokens x features), got "
                         f"{type(table).__name__} {tuple(getattr(table, 'shape', ()))}")
    n, width = table.shape
    if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= min(n, width):
        raise ValueError(f"d must be an int in [1, min(rows, columns)] = [1, {min(n, width)}], "
                         f"got {d!r}")
    x = table.detach().to(torch.float64).cpu()
    if not torch.isfinite(x).all():
        raise ValueError("the table holds NaN or infinite values")
    mean = x.mean(0) if centered else torch.zeros(width, dtype=torch.float64)
    xc = x - mean
    total = float((xc ** 2).sum())
    if total == 0:
        raise ValueError("the table is constant (zero variance): no principal direction")
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    m = vh[:d].T.contiguous()
    lead = m.abs().argmax(0)                       # first index of the largest |entry|
    sign = torch.sign(m[lead, torch.arange(d)])
    m = m * torch.where(sign == 0, torch.ones_like(sign), sign)
    return PCA(m, mean, (s[:d] ** 2) / total, centered)


# ---------------------------------------------------------------- uniform selection

def uniform_indices(n: int, m: int) -> list[int]:
    """``m`` evenly spaced, sorted, distinct indices out of ``range(n)``: index ``i`` is
    ``i (n - 1) / (m - 1)`` rounded half up (exactly, in integers: numpy's and torch's
    round-half-to-even and Python's ``round`` disagree at exact halves). The first and
    last are always 0 and n - 1; ``m = 1`` gives ``[0]`` (like ``linspace``)."""
    for name, v in (("n", n), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if not 1 <= m <= n:
        raise ValueError(f"cannot select m={m} of n={n} items evenly: need 1 <= m <= n")
    if m == 1:
        return [0]
    return [(2 * i * (n - 1) + (m - 1)) // (2 * (m - 1)) for i in range(m)]


# ---------------------------------------------------------------- folding the first block

def _norm_kind(norm: nn.Module) -> str:
    if isinstance(norm, nn.Identity):
        return "none"
    if isinstance(norm, nn.LayerNorm):
        return "layernorm"
    if isinstance(norm, nn.RMSNorm):
        return "rmsnorm"
    raise TypeError(f"cannot fold a {type(norm).__name__}: supported norms are LayerNorm, "
                    f"RMSNorm and Identity")


def _fold_reader(norm_t: nn.Module, w_rows: torch.Tensor, m: torch.Tensor):
    """A teacher ``norm -> linear`` pair (rows ``w_rows`` of the linear, float64) read
    from the student's stream: the student's weight and the bias the teacher's norm
    adds after the linear (``W b``, or None)."""
    kind = _norm_kind(norm_t)
    d_t, d_s = m.shape
    if kind == "none":
        return w_rows @ m, None
    g = norm_t.weight.detach().double() if norm_t.weight is not None else torch.ones(d_t, dtype=torch.float64)
    folded = w_rows * g                                     # W diag(g)
    if kind == "layernorm":                                 # the teacher's centring: P_T M
        m = m - m.mean(0, keepdim=True)
    w_s = math.sqrt(d_t / d_s) * folded @ m
    b = getattr(norm_t, "bias", None)
    return w_s, (w_rows @ b.detach().double() if b is not None else None)


def _set_norm(norm_s: nn.Module, bias: torch.Tensor | None) -> None:
    """The student's norm: gain 1 (folded into the next layer), bias ``bias`` or 0."""
    with torch.no_grad():
        if getattr(norm_s, "weight", None) is not None:
            norm_s.weight.fill_(1.0)
        if getattr(norm_s, "bias", None) is not None:
            norm_s.bias.copy_(bias if bias is not None else torch.zeros_like(norm_s.bias))


def _place_bias(norm_s: nn.Module, lin_s: nn.Linear, bias_t: torch.Tensor | None,
                w_s: torch.Tensor, wb: torch.Tensor | None) -> torch.Tensor | None:
    """Put the teacher norm's bias effect ``wb = W b`` into the student: into the
    following linear's bias when the student's has one (exact; ``bias_t`` is the
    teacher linear's own bias on the kept rows), else into the student norm's bias by
    least squares (``W_S b_S ~ W b``; exact when ``W b`` lies in W_S's column space).
    Returns the student linear's bias (None when it has none)."""
    if lin_s.bias is not None:
        out = torch.zeros(w_s.shape[0], dtype=torch.float64)
        for part in (bias_t, wb):
            if part is not None:
                out += part
        _set_norm(norm_s, None)
        return out
    if wb is not None and getattr(norm_s, "bias", None) is not None:
        b_s = torch.linalg.lstsq(w_s, wb.unsqueeze(1)).solution.squeeze(1)
        _set_norm(norm_s, b_s.to(norm_s.bias.dtype))
    else:
        _set_norm(norm_s, None)
    return None


@dataclass(frozen=True)
class GuideInit:
    """What :func:`guide_init` did: the PCA, the selected heads, dimensions within a
    head and MLP units, the norm kind, and how long it took."""
    pca: PCA
    heads: tuple[int, ...] | None
    head_dims: tuple[int, ...] | None
    units: tuple[int, ...] | None
    norm: str | None
    seconds: float


def _check_pair(student: lm.GPT, teacher: lm.GPT) -> None:
    cs, ct = student.cfg, teacher.cfg
    if cs.vocab_size != ct.vocab_size:
        raise ValueError(f"GUIDE needs the teacher's vocabulary: the teacher has "
                         f"{ct.vocab_size} token ids, the student {cs.vocab_size} (train both "
                         f"on the same tokenizer)")
    if cs.d_model > ct.d_model:
        raise ValueError(f"the student is wider than the teacher (d_S={cs.d_model} > "
                         f"d_T={ct.d_model}); GUIDE projects onto d_S <= d_T directions")
    if cs.block > ct.block:
        raise ValueError(f"the student's context ({cs.block}) is longer than the teacher's "
                         f"({ct.block}): positions {ct.block}..{cs.block - 1} have no teacher row")


def guide_init(student: lm.GPT, teacher: lm.GPT, *, embeddings: bool = True,
               first_block: bool = True, centered: bool = False) -> GuideInit:
    """Initialise ``student`` from ``teacher`` in place (both :class:`lm.GPT`, same
    vocabulary): token and positional embeddings by the PCA projection ``E_T M``, and,
    with ``first_block``, block 0 folded through M with heads, head dimensions and MLP
    units chosen by :func:`uniform_indices`.

    The fold, with x_S = M^T x_T (columns):
      q, k, v rows of the selected heads  W_S = sqrt(d_T/d_S) W diag(g1) P M
                                          (q rows also scaled by sqrt(hd_S/hd_T), which
                                          keeps the attention logits when head
                                          dimensions are dropped)
      attention output                    W_S = M^T W[:, selected]
      MLP in / out                        sqrt(d_T/d_S) W1[units] diag(g2) P M, M^T W2[:, units]
    with P the teacher's centring (LayerNorm only; identity otherwise). The student's norm
    gains become 1. With d_S = d_T, every head and unit kept and no norm (or RMSNorm),
    the student's block computes exactly ``M^T block_T(M x_S)``."""
    if not (embeddings or first_block):
        raise ValueError("nothing to initialise: embeddings and first_block are both False")
    _check_pair(student, teacher)
    t0 = time.perf_counter()
    d_t, d_s = teacher.cfg.d_model, student.cfg.d_model
    if first_block:
        _check_blocks(student.blocks[0], teacher.blocks[0], d_t, d_s)
    pca = pca_projection(teacher.tok.weight, d_s, centered)
    m = pca.components
    heads = head_dims = units = norm = None
    with torch.no_grad():
        if embeddings:
            student.tok.weight.copy_(pca.project(teacher.tok.weight))
            student.pos.weight.copy_(pca.project(teacher.pos.weight[:student.cfg.block]))
        if first_block:
            heads, head_dims, units, norm = _fold_block(student.blocks[0], teacher.blocks[0], m)
    return GuideInit(pca, heads, head_dims, units, norm, time.perf_counter() - t0)


def _check_blocks(bs: nn.Module, bt: nn.Module, d_t: int, d_s: int) -> str:
    """Raise before anything is written unless block ``bt`` folds into ``bs``; returns
    the norm kind."""
    for need in ("ln1", "attn", "ln2", "mlp"):
        if not hasattr(bs, need) or not hasattr(bt, need):
            raise TypeError(f"block lacks {need!r}: fold an lm.Block (unwrapped)")
    kind = _norm_kind(bt.ln1)
    if _norm_kind(bs.ln1) != kind or _norm_kind(bt.ln2) != kind or _norm_kind(bs.ln2) != kind:
        raise TypeError(f"teacher and student must use the same norm, got "
                        f"{type(bt.ln1).__name__} / {type(bs.ln1).__name__}")
    nh_t, nh_s = bt.attn.n_head, bs.attn.n_head
    if nh_s > nh_t or d_s // nh_s > d_t // nh_t:
        raise ValueError(f"the student's attention ({nh_s} heads of {d_s // nh_s}) does not "
                         f"fit in the teacher's ({nh_t} heads of {d_t // nh_t})")
    if bs.mlp[0].out_features > bt.mlp[0].out_features:
        raise ValueError(f"the student's MLP ({bs.mlp[0].out_features} units) is wider than "
                         f"the teacher's ({bt.mlp[0].out_features})")
    return kind


def _fold_block(bs: nn.Module, bt: nn.Module, m: torch.Tensor):
    d_t, d_s = m.shape
    kind = _check_blocks(bs, bt, d_t, d_s)
    nh_t, nh_s = bt.attn.n_head, bs.attn.n_head
    hd_t, hd_s = d_t // nh_t, d_s // nh_s
    heads, dims = uniform_indices(nh_t, nh_s), uniform_indices(hd_t, hd_s)
    cols = [h * hd_t + j for h in heads for j in dims]
    qkv_t, qkv_s = bt.attn.qkv, bs.attn.qkv
    w = qkv_t.weight.detach().double()
    rows = cols + [d_t + c for c in cols] + [2 * d_t + c for c in cols]
    scale = torch.ones(len(rows), 1, dtype=torch.float64)
    scale[:len(cols)] = math.sqrt(hd_s / hd_t)
    w_rows = w[rows] * scale
    w_s, wb = _fold_reader(bt.ln1, w_rows, m)
    bias_t = (qkv_t.bias.detach().double()[rows] * scale.squeeze(1)
              if qkv_t.bias is not None else None)
    qkv_bias = _place_bias(bs.ln1, qkv_s, bias_t, w_s, wb)
    _copy(qkv_s, w_s, qkv_bias)
    proj_t, proj_s = bt.attn.proj, bs.attn.proj
    _copy(proj_s, m.T @ proj_t.weight.detach().double()[:, cols],
          m.T @ proj_t.bias.detach().double() if proj_t.bias is not None and proj_s.bias is not None else None)
    up_t, up_s, down_t, down_s = bt.mlp[0], bs.mlp[0], bt.mlp[2], bs.mlp[2]
    units = uniform_indices(up_t.out_features, up_s.out_features)
    w1_s, wb1 = _fold_reader(bt.ln2, up_t.weight.detach().double()[units], m)
    bias1 = up_t.bias.detach().double()[units] if up_t.bias is not None else None
    _copy(up_s, w1_s, _place_bias(bs.ln2, up_s, bias1, w1_s, wb1))
    _copy(down_s, m.T @ down_t.weight.detach().double()[:, units],
          m.T @ down_t.bias.detach().double() if down_t.bias is not None and down_s.bias is not None else None)
    return tuple(heads), tuple(dims), tuple(units), kind


def _copy(lin: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if tuple(weight.shape) != tuple(lin.weight.shape):
        raise ValueError(f"folded weight {tuple(weight.shape)} does not fit the student's "
                         f"{tuple(lin.weight.shape)}")
    lin.weight.copy_(weight.to(lin.weight.dtype))
    if lin.bias is not None:
        lin.bias.copy_(bias.to(lin.bias.dtype) if bias is not None else torch.zeros_like(lin.bias))


def fold_error(teacher: lm.GPT, student: lm.GPT, x_t: torch.Tensor, m: torch.Tensor) -> float:
    """Relative error ``||branch_S(x_S) - M^T branch_T(M x_S)|| / ||M^T branch_T(M x_S)||``
    of the student's first block against the teacher's first block run on the
    reconstructed stream ``M x_S`` (``x_S = M^T x_T``), over the teacher streams ``x_t``
    ([..., d_T]). Zero when the fold is exact."""
    bt, bs = copy.deepcopy(teacher.blocks[0]).double(), copy.deepcopy(student.blocks[0]).double()
    with torch.no_grad():
        x_s = x_t.to(m.dtype) @ m
        ref = bt.branch(x_s @ m.T) @ m
        out = bs.branch(x_s)
    return float((out - ref).norm() / ref.norm())


def same_vocabulary(a, b) -> None:
    """Raise ValueError unless tokenizers ``a`` and ``b`` map the same strings to the
    same ids (GUIDE copies rows of the teacher's embedding table by id)."""
    va, vb = _vocab(a), _vocab(b)
    if va == vb:
        return
    if len(va) != len(vb):
        raise ValueError(f"vocabularies differ in size: {len(va)} and {len(vb)} ids; GUIDE "
                         f"needs the teacher's tokenizer")
    diff = next(k for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k))
    raise ValueError(f"vocabularies differ: token {diff!r} has id {va.get(diff)} in one and "
                     f"{vb.get(diff)} in the other; GUIDE needs the teacher's tokenizer")


def _vocab(tok) -> dict[str, int]:
    if hasattr(tok, "_tok"):
        return dict(tok._tok.get_vocab())
    if hasattr(tok, "chars"):
        return {c: i for i, c in enumerate(tok.chars)}
    raise TypeError(f"not a tokenizer of effdl_lib.toolkits.lm: {type(tok).__name__}")


# ---------------------------------------------------------------- distillation for LMs

def lm_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               targets: torch.Tensor, weight: float, temperature: float) -> torch.Tensor:
    """``(1 - weight) CE(student, next token) + weight T^2 KL(p_T^T || p_S^T)`` per
    token, averaged over every position (Hinton et al. 2015 on next-token
    distributions; the KL term is :func:`effdl_lib.toolkits.distill.kd_loss`)."""
    if not 0 <= weight <= 1:
        raise ValueError(f"the KD weight must be in [0, 1], got {weight}")
    if student_logits.shape != teacher_logits.shape or student_logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits [..., V] of student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)} must match, targets "
                         f"{tuple(targets.shape)} their leading shape")
    v = student_logits.shape[-1]
    s, t = student_logits.reshape(-1, v), teacher_logits.reshape(-1, v)
    ce = F.cross_entropy(s, targets.reshape(-1))
    if weight == 0:
        return ce
    return (1 - weight) * ce + weight * D.kd_loss(s, t, temperature)


class KDStudent(nn.Module):
    """A student trained with :func:`lm_kd_loss` against a frozen teacher, shaped like an
    :class:`lm.GPT` (``forward(idx, targets) -> (logits, loss)``) so that ``lm.train``
    and ``lm.time_steps`` run it unchanged. In eval mode the loss is the student's plain
    cross-entropy, so ``lm.evaluate`` reports the same quantity for every arm. The
    teacher's parameters are frozen (outside the optimiser and the weight decay)."""

    def __init__(self, student: lm.GPT, teacher: lm.GPT, weight: float, temperature: float):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if student.cfg.vocab_size != teacher.cfg.vocab_size:
            raise ValueError(f"teacher ({teacher.cfg.vocab_size} ids) and student "
                             f"({student.cfg.vocab_size} ids) must share the vocabulary")
        self.student, self.teacher = student, teacher.requires_grad_(False)
        self.weight, self.temperature = float(weight), float(temperature)

    def forward(self, idx, targets=None):
        logits = self.student(idx)
        if targets is None:
            return logits
        if not self.training:
            return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        self.teacher.eval()
        with torch.no_grad():
            t_logits = self.teacher(idx)
        return logits, lm_kd_loss(logits, t_logits, targets, self.weight, self.temperature)


# ---------------------------------------------------------------- data and the cached teacher

@functools.lru_cache(maxsize=4)
def corpus(name: str, vocab_size: int, train_share: float = 0.9):
    """The corpus as BPE ids: the tokenizer is trained on the first ``train_share`` of
    the text only; the rest is split in half into validation and test. Returns
    (tokenizer, lm.Splits)."""
    text = lm.load_text(name)
    cut = int(len(text) * train_share)
    tok = lm.bpe_tokenizer(text[:cut], vocab_size, f"{name}-train{int(100 * train_share)}")
    rest = torch.tensor(tok.encode(text[cut:]), dtype=torch.long)
    half = len(rest) // 2
    return tok, lm.Splits(torch.tensor(tok.encode(text[:cut]), dtype=torch.long),
                          rest[:half], rest[half:])


def embedding_share(vocab_size: int, d_model: int, n_layer: int, block: int, n_head: int) -> float:
    """Share of a tied GPT's parameters in its token-embedding table."""
    model = lm.GPT(lm.GPTConfig(vocab_size, block, n_layer, d_model, n_head))
    return model.tok.weight.numel() / lm.n_params(model)


TEACHER_VERSION = 1


def _teacher_code() -> str:
    """Hash of the source of the code that builds and trains the teacher."""
    parts = (lm.GPT, lm.Block, lm.CausalSelfAttention, lm.train, lm.next_token_loss,
             lm.make_optimizer, lm.param_groups, lm.warmup_cosine, lm.random_windows,
             lm.windows_at, get_teacher)
    return hashlib.sha256("".join(inspect.getsource(p) for p in parts).encode()).hexdigest()


def teacher_key(cfg: "Config", train_ids: torch.Tensor) -> str:
    """Hash of everything the teacher depends on: its architecture and training
    settings, the training ids, the source of the code that trains it, and the format
    version."""
    blob = json.dumps({"v": TEACHER_VERSION, "code": _teacher_code(), "corpus": cfg.corpus,
                       "vocab": cfg.vocab_size,
                       "arch": dataclasses.asdict(cfg.teacher_config(cfg.vocab_size)),
                       "steps": cfg.teacher_steps, "lr": cfg.teacher_lr, "batch": cfg.batch,
                       "warmup": cfg.teacher_warmup, "wd": cfg.weight_decay,
                       "ids": hashlib.sha256(train_ids.numpy().tobytes()).hexdigest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _state_digest(state: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        a = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{a.dtype}|{tuple(a.shape)}".encode())
        h.update(a.numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Teacher:
    model: lm.GPT
    key: str
    path: Path
    from_cache: bool
    train_seconds: float     # of the run that trained it (kept in the cache)
    curve_steps: list
    curve_loss: list         # validation loss while it trained


def teacher_path(cfg: "Config", train_ids: torch.Tensor) -> Path:
    return _data.cache_dir() / "teachers" / f"guide-{cfg.corpus.replace('/', '_')}-{teacher_key(cfg, train_ids)}.pt"


def get_teacher(cfg: "Config", cache: bool = True) -> Teacher:
    """The chapter's teacher: loaded from ``data.cache_dir()/teachers`` when a file with
    this key exists and passes its checks (key, digest, shapes), else trained on the
    training split (seed 0, ``teacher_steps`` steps) and stored atomically. A file that
    fails a check is retrained with a warning, never trusted."""
    tok, sp = corpus(cfg.corpus, cfg.vocab_size)
    key = teacher_key(cfg, sp.train)
    path = teacher_path(cfg, sp.train)
    tcfg = cfg.teacher_config(tok.vocab_size)
    if cache and path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(blob["meta"])
            if meta["key"] != key or meta["digest"] != _state_digest(blob["state"]):
                raise ValueError("key or digest mismatch")
            model = lm.GPT(tcfg)
            model.load_state_dict(blob["state"])
            model.eval()
            return Teacher(model, key, path, True, meta["train_seconds"], meta["curve_steps"],
                           meta["curve_loss"])
        except Exception as exc:  # noqa: BLE001 - any failure means: do not trust it
            warnings.warn(f"teacher cache {path.name} is unusable ({type(exc).__name__}: {exc}); "
                          f"retraining the teacher", RuntimeWarning, stacklevel=2)
    torch.manual_seed(0)
    model = lm.GPT(tcfg)
    val_starts = lm.fixed_windows(sp.val, cfg.block, cfg.eval_windows, seed=1)
    res = lm.train(model, sp.train, steps=cfg.teacher_steps, batch=cfg.batch, block=cfg.block,
                   lr=cfg.teacher_lr, seed=0, warmup=cfg.teacher_warmup,
                   weight_decay=cfg.weight_decay, eval_ids=sp.val, eval_starts=val_starts,
                   eval_every=max(1, cfg.teacher_steps // 10), desc="teacher")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    meta = {"key": key, "digest": _state_digest(state), "train_seconds": res.seconds,
            "curve_steps": res.eval_steps, "curve_loss": res.eval_loss}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
        os.close(fd)
        try:
            torch.save({"meta": json.dumps(meta), "state": state}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return Teacher(model, key, path, False, res.seconds, res.eval_steps, res.eval_loss)


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class Config(ChapterConfig):
    seeds: int
    student_steps: int
    teacher_steps: int
    corpus: str = "tinyshakespeare"
    vocab_size: int = 2048
    block: int = 32
    batch: int = 32
    teacher_d: int = 128
    teacher_layers: int = 2
    teacher_heads: int = 4
    student_d: int = 64
    student_layers: int = 2
    student_heads: int = 2
    lr: float = 3e-3
    warmup: int = 24
    teacher_lr: float = 2e-3
    teacher_warmup: int = 60
    weight_decay: float = 0.1
    kd_weights: tuple[float, ...] = (0.5, 0.9)
    kd_temperatures: tuple[float, ...] = (1.0, 2.0)
    centered: bool = False
    eval_every: int = 40
    eval_windows: int = 128     # fixed validation windows: curves and the KD choice
    test_windows: int = 256     # fixed test windows: the final losses
    recon_dims: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    time_steps: int = 3
    time_repeats: int = 11
    workers: int = 2            # processes for the training runs (1: in this process)

    CONSTRAINTS: ClassVar[dict] = {
        "seeds": Range(1, 50), "student_steps": Range(1, 1_000_000),
        "teacher_steps": Range(1, 10_000_000), "corpus": OneOf(lm.CORPORA),
        "vocab_size": Range(257, 65536), "block": Range(4, 4096), "batch": Range(1, 4096),
        "teacher_d": Range(2, 8192), "teacher_layers": Range(1, 64),
        "teacher_heads": Range(1, 128), "student_d": Range(1, 8192),
        "student_layers": Range(1, 64), "student_heads": Range(1, 128),
        "lr": Range(0, 1, lo_open=True), "warmup": Range(0, 1_000_000),
        "teacher_lr": Range(0, 1, lo_open=True), "teacher_warmup": Range(0, 1_000_000),
        "weight_decay": Range(0, 1), "kd_weights": Range(0, 1, lo_open=True),
        "kd_temperatures": Range(0, 100, lo_open=True), "eval_every": Range(1, 1_000_000),
        "eval_windows": Range(1, 100_000), "test_windows": Range(1, 1_000_000),
        "recon_dims": Range(1, 8192), "time_steps": Range(1, 100),
        "time_repeats": Range(2, 1000), "workers": Range(1, 64)}
    NOT_SIZES: ClassVar[tuple] = ()

    @classmethod
    def profiles(cls):
        return {
            "smoke": cls(seeds=2, student_steps=30, teacher_steps=150, vocab_size=512, block=16,
                         batch=8, teacher_d=32, teacher_heads=2, student_d=16, student_heads=1,
                         warmup=5, teacher_warmup=10, kd_weights=(0.5,), kd_temperatures=(2.0,),
                         eval_every=10, eval_windows=16, test_windows=32,
                         recon_dims=(4, 8, 16, 32), time_steps=1, time_repeats=3, workers=1),
            "cpu": cls(seeds=3, student_steps=160, teacher_steps=1200, warmup=16, time_repeats=9),
            "gpu": cls(seeds=5, student_steps=3000, teacher_steps=15000, vocab_size=8192,
                       block=128, batch=64, teacher_d=256, teacher_layers=4, teacher_heads=8,
                       student_d=128, student_layers=2, student_heads=4, lr=1e-3, warmup=200,
                       teacher_lr=1e-3, teacher_warmup=500, eval_every=250, eval_windows=256,
                       test_windows=1024, recon_dims=(8, 16, 32, 64, 128, 256), time_repeats=21,
                       workers=1, device="auto"),
        }

    def validate(self):
        require(len(self.kd_weights) > 0 and len(self.kd_temperatures) > 0 and len(self.recon_dims) > 0,
                "kd_weights, kd_temperatures and recon_dims must not be empty")
        require(self.teacher_d % self.teacher_heads == 0,
                f"teacher_d={self.teacher_d} must be divisible by teacher_heads={self.teacher_heads}")
        require(self.student_d % self.student_heads == 0,
                f"student_d={self.student_d} must be divisible by student_heads={self.student_heads}")
        require(self.student_d <= self.teacher_d,
                f"student_d={self.student_d} exceeds teacher_d={self.teacher_d}")
        require(self.student_heads <= self.teacher_heads and
                self.student_d // self.student_heads <= self.teacher_d // self.teacher_heads,
                f"the student's heads ({self.student_heads} of {self.student_d // self.student_heads}) "
                f"must fit in the teacher's ({self.teacher_heads} of "
                f"{self.teacher_d // self.teacher_heads})")
        require(self.teacher_steps >= 3 * self.student_steps,
                f"the teacher must train several times longer than the students: "
                f"teacher_steps={self.teacher_steps} < 3 x student_steps={self.student_steps}")
        require(self.warmup <= self.student_steps, f"warmup={self.warmup} exceeds student_steps")
        require(self.teacher_warmup <= self.teacher_steps,
                f"teacher_warmup={self.teacher_warmup} exceeds teacher_steps")
        require(max(self.recon_dims) <= self.teacher_d,
                f"recon_dims {self.recon_dims} must not exceed teacher_d={self.teacher_d}")
        require(self.teacher_d <= self.vocab_size,
                f"teacher_d={self.teacher_d} exceeds vocab_size={self.vocab_size}: the PCA "
                f"needs at least d rows")

    def teacher_config(self, vocab_size: int) -> lm.GPTConfig:
        return lm.GPTConfig(vocab_size, self.block, self.teacher_layers, self.teacher_d,
                            self.teacher_heads)

    def student_config(self, vocab_size: int) -> lm.GPTConfig:
        return lm.GPTConfig(vocab_size, self.block, self.student_layers, self.student_d,
                            self.student_heads)


# ---------------------------------------------------------------- the arms

def build_arm(arm: str, cfg: Config, teacher: lm.GPT, seed: int,
              kd: tuple[float, float] | None = None):
    """The model one arm trains, its student, and the GUIDE init (or None). Every arm of
    a seed starts from the same default student initialisation (seed ``10_000 + seed``);
    the GUIDE arms then overwrite the embeddings (and block 0)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose one of {', '.join(ARMS)}")
    torch.manual_seed(10_000 + seed)
    student = lm.GPT(cfg.student_config(teacher.cfg.vocab_size))
    info = None
    if arm in (EMB, GUIDE, GUIDE_KD):
        info = guide_init(student, teacher, first_block=(arm != EMB), centered=cfg.centered)
    if arm in (KD, GUIDE_KD):
        if kd is None:
            raise ValueError(f"arm {arm!r} needs the KD (weight, temperature)")
        return KDStudent(student, teacher, *kd), student, info
    return student, student, info


def run_arm(job: dict) -> dict:
    """Train one (arm, seed) and return its test and validation losses and its curve.
    A picklable function of a dict, for :func:`effdl_lib.toolkits.grid.sweep`."""
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["cfg"].items()})
    device = pick_device(cfg.device)
    tok, sp = corpus(cfg.corpus, cfg.vocab_size)
    teacher = get_teacher(cfg).model.to(device)
    kd = tuple(job["kd"]) if job.get("kd") else None
    model, student, info = build_arm(job["arm"], cfg, teacher, job["seed"], kd)
    model.to(device)
    val_starts = lm.fixed_windows(sp.val, cfg.block, cfg.eval_windows, seed=1)
    test_starts = lm.fixed_windows(sp.test, cfg.block, cfg.test_windows, seed=2)
    res = lm.train(model, sp.train, steps=cfg.student_steps, batch=cfg.batch, block=cfg.block,
                   lr=cfg.lr, seed=1000 + job["seed"], warmup=cfg.warmup,
                   weight_decay=cfg.weight_decay, eval_ids=sp.val, eval_starts=val_starts,
                   eval_every=cfg.eval_every, desc=f"{job['arm']} s{job['seed']}")
    v0 = lm.evaluate(_fresh(job["arm"], cfg, teacher, job["seed"], device), sp.val, val_starts, cfg.block)
    return {"test_loss": lm.evaluate(student, sp.test, test_starts, cfg.block),
            "val_loss": res.eval_loss[-1], "curve_steps": [0] + res.eval_steps,
            "curve_loss": [v0] + res.eval_loss, "seconds": res.seconds,
            "init_seconds": info.seconds if info else 0.0}


def _fresh(arm: str, cfg: Config, teacher: lm.GPT, seed: int, device) -> lm.GPT:
    """The arm's student at step 0 (for the start of the loss curve)."""
    return build_arm(arm if arm not in (KD, GUIDE_KD) else {KD: SCRATCH, GUIDE_KD: GUIDE}[arm],
                     cfg, teacher, seed)[1].to(device)


def run_jobs(jobs: list[dict], cfg: Config, desc: str, client=None) -> pd.DataFrame:
    from ..toolkits.grid import sweep
    return sweep(run_arm, jobs,
                 key=lambda j: f"{j['arm']}-{j['seed']}-" + "-".join(map(str, j.get("kd") or [])),
                 mode="serial" if cfg.workers == 1 else "dask", workers=cfg.workers,
                 client=client, desc=desc)


def choose_kd(tuning: pd.DataFrame) -> tuple[float, float]:
    """The (weight, temperature) with the lowest validation loss (first on a tie)."""
    best = tuning.sort_values("val_loss", kind="stable").iloc[0]
    return float(best["kd_weight"]), float(best["temperature"])


def reconstruction_table(teacher: lm.GPT, dims: Sequence[int], ids: torch.Tensor,
                         starts: torch.Tensor, block: int, centered: bool) -> pd.DataFrame:
    """The teacher's loss with its token table (and so its tied head) and positional
    table replaced by their rank-d reconstructions through the token table's top-d
    directions, beside the explained variance: deterministic, no training."""
    full = lm.evaluate(teacher, ids, starts, block)
    rows = []
    for d in dims:
        pca = pca_projection(teacher.tok.weight, d, centered)
        model = copy.deepcopy(teacher)
        with torch.no_grad():
            model.tok.weight.copy_(pca.reconstruct(teacher.tok.weight))
            model.pos.weight.copy_(pca.reconstruct(teacher.pos.weight))
        rows.append({"d": d, "explained variance": pca.explained_total,
                     "teacher loss": lm.evaluate(model, ids, starts, block),
                     "loss increase": lm.evaluate(model, ids, starts, block) - full})
    return pd.DataFrame(rows)


def fold_errors(teacher: lm.GPT, cfg: Config, ids: torch.Tensor, starts: torch.Tensor) -> pd.DataFrame:
    """How close the folded first block is on the trained teacher's real streams: at
    d_S = d_T with every head (only the LayerNorm breaks exactness) and at the student's
    size (with uniform selection of heads and units)."""
    x, _ = lm.windows_at(ids, starts, cfg.block)
    with torch.no_grad():
        x_t = (teacher.tok(x) + teacher.pos(torch.arange(cfg.block))).double()
    rows = []
    for d, h, what in ((cfg.teacher_d, cfg.teacher_heads, "d_S = d_T, every head and unit"),
                       (cfg.student_d, cfg.student_heads, "the student's size (uniform selection)")):
        torch.manual_seed(0)
        student = lm.GPT(lm.GPTConfig(teacher.cfg.vocab_size, cfg.block, 1, d, h))
        info = guide_init(student, teacher, centered=cfg.centered)
        rows.append({"student": what, "d_S": d, "heads": h,
                     "relative error of block 1": fold_error(teacher, student, x_t, info.pca.components)})
    return pd.DataFrame(rows)


def time_arms(cfg: Config, teacher: lm.GPT, kd: tuple[float, float], ids: torch.Tensor):
    """Seconds per training step of the scratch, GUIDE, KD and GUIDE + KD students,
    interleaved (lm.time_steps): GUIDE changes only the starting point, KD adds the
    teacher's forward pass."""
    device = pick_device(cfg.device)
    models = {arm: build_arm(arm, cfg, teacher, 0, kd)[0].to(device)
              for arm in (SCRATCH, GUIDE, KD, GUIDE_KD)}
    return lm.time_steps(models, ids, batch=cfg.batch, block=cfg.block,
                         steps_per_repeat=cfg.time_steps, repeats=cfg.time_repeats, warmup=1)


def run(cfg: Config, rt=None) -> dict[str, Any]:
    """The teacher (cached), the KD tuning on the validation split (seed
    :data:`TUNE_SEED`), every arm on every seed (paired: same initialisation and batches
    per seed), the reconstruction and fold cells, and the interleaved step timing."""
    import contextlib
    from ..toolkits.grid import dask_client
    tok, sp = corpus(cfg.corpus, cfg.vocab_size)
    teacher = get_teacher(cfg)
    tmodel = teacher.model.to(pick_device(cfg.device))
    val_starts = lm.fixed_windows(sp.val, cfg.block, cfg.eval_windows, seed=1)
    test_starts = lm.fixed_windows(sp.test, cfg.block, cfg.test_windows, seed=2)
    t_val = lm.evaluate(tmodel, sp.val, val_starts, cfg.block)
    t_test = lm.evaluate(tmodel, sp.test, test_starts, cfg.block)
    plain = {**cfg.asdict(), "threads": 1}
    grid = [(w, t) for w in cfg.kd_weights for t in cfg.kd_temperatures]
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(dask_client(cfg.workers)) if cfg.workers > 1 else None
        tune_jobs = [{"arm": KD, "seed": TUNE_SEED, "kd": list(g), "cfg": plain} for g in grid]
        tuning = run_jobs(tune_jobs, cfg, "KD tuning", client) if len(grid) > 1 else None
        if tuning is not None:
            tuning = tuning.assign(kd_weight=[j["kd"][0] for j in tune_jobs],
                                   temperature=[j["kd"][1] for j in tune_jobs])
        kd = choose_kd(tuning) if tuning is not None else grid[0]
        jobs = [{"arm": a, "seed": s, "kd": list(kd) if a in (KD, GUIDE_KD) else None, "cfg": plain}
                for s in range(cfg.seeds) for a in ARMS]
        table = run_jobs(jobs, cfg, "arms", client)
    runs = table[["seed", "arm", "test_loss", "val_loss", "seconds", "init_seconds"]].copy()
    curves = pd.DataFrame([{"seed": r.seed, "arm": r.arm, "step": s, "val_loss": v}
                           for r in table.itertuples() for s, v in zip(r.curve_steps, r.curve_loss)])
    char_vocab = lm.CharTokenizer(lm.load_text(cfg.corpus)).vocab_size
    shares = {"char_vocab": char_vocab,
              "char": embedding_share(char_vocab, cfg.student_d, cfg.student_layers, cfg.block, cfg.student_heads),
              "bpe": embedding_share(tok.vocab_size, cfg.student_d, cfg.student_layers, cfg.block, cfg.student_heads)}
    return {"cfg": cfg, "runs": runs, "curves": curves,
            "tuning": tuning if tuning is not None else pd.DataFrame(), "kd": kd,
            "teacher": {"val_loss": t_val, "test_loss": t_test, "from_cache": teacher.from_cache,
                        "train_seconds": teacher.train_seconds, "key": teacher.key,
                        "curve_steps": teacher.curve_steps, "curve_loss": teacher.curve_loss,
                        "params": lm.n_params(tmodel)},
            "student_params": lm.n_params(lm.GPT(cfg.student_config(tok.vocab_size))),
            "tokens": {"train": len(sp.train), "val": len(sp.val), "test": len(sp.test),
                       "vocab": tok.vocab_size},
            "embedding_share": shares,
            "reconstruction": reconstruction_table(tmodel, cfg.recon_dims, sp.val, val_starts,
                                                   cfg.block, cfg.centered),
            "fold": fold_errors(tmodel, cfg, sp.val, val_starts[:32]),
            "timing": time_arms(cfg, tmodel, kd, sp.train)}


# ---------------------------------------------------------------- tables

def _wide(runs: pd.DataFrame, value: str = "test_loss") -> pd.DataFrame:
    return runs.pivot_table(index="seed", columns="arm", values=value)


def gap_shares(runs: pd.DataFrame, teacher_loss: float, value: str = "test_loss") -> dict[str, Estimate]:
    """Per arm, the share of the teacher-student gap closed,
    (L_scratch - L_arm) / (L_scratch - L_teacher), with a paired bootstrap interval over
    seeds (stats.bootstrap_share)."""
    w = _wide(runs, value)
    base = w[SCRATCH].to_numpy()
    den = base - teacher_loss
    return {a: bootstrap_share(base - w[a].to_numpy(), den) for a in ARMS if a != SCRATCH}


def summary(results: dict) -> pd.DataFrame:
    """Per arm: test loss (mean, 95 % CI), share of the gap closed (bootstrap CI), and
    the step-time ratio against scratch (interleaved repeats)."""
    runs, timing = results["runs"], results["timing"]
    shares = gap_shares(runs, results["teacher"]["test_loss"])
    rows = []
    for arm in ARMS:
        loss = mean_ci(_wide(runs)[arm].to_numpy())
        row = {"arm": arm, "test loss": loss.mean, "CI low": loss.ci_low, "CI high": loss.ci_high}
        if arm in shares:
            s = shares[arm]
            row.update({"gap closed": s.mean, "gap CI low": s.ci_low, "gap CI high": s.ci_high})
        if arm in timing.arms:
            row["step time / scratch"] = (timing.ratio(arm, SCRATCH).mean if arm != SCRATCH else 1.0)
        rows.append(row)
    rows.append({"arm": "teacher", "test loss": results["teacher"]["test_loss"]})
    return pd.DataFrame(rows).set_index("arm")


def share_curves(curves: pd.DataFrame, teacher_val: float) -> pd.DataFrame:
    """Share of the (validation) gap closed at each evaluation step, per arm and seed."""
    w = curves.pivot_table(index=["seed", "step"], columns="arm", values="val_loss")
    base = w[SCRATCH]
    out = [pd.DataFrame({"seed": w.index.get_level_values(0), "step": w.index.get_level_values(1),
                         "arm": a, "share": ((base - w[a]) / (base - teacher_val)).to_numpy()})
           for a in ARMS if a != SCRATCH]
    return pd.concat(out, ignore_index=True)


def fold_demo(norm: str) -> float:
    """Relative error of GUIDE's block fold on a random 1-block GPT (d 16 -> 8, float64,
    perturbed weights) with LayerNorm, RMSNorm or no norm ("none") in the block: exact
    up to rounding without a norm or with RMSNorm, not with LayerNorm."""
    if norm not in ("none", "RMSNorm", "LayerNorm"):
        raise ValueError(f"norm must be 'none', 'RMSNorm' or 'LayerNorm', got {norm!r}")
    t = lm.GPT(lm.GPTConfig(40, 8, 1, 16, 4)).double()
    s = lm.GPT(lm.GPTConfig(40, 8, 1, 16, 4)).double()
    for m in (t, s):
        if norm != "LayerNorm":
            m.blocks[0].ln1 = nn.Identity() if norm == "none" else nn.RMSNorm(16).double()
            m.blocks[0].ln2 = nn.Identity() if norm == "none" else nn.RMSNorm(16).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    info = guide_init(s, t)
    x = torch.randn(2, 8, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return fold_error(t, s, x, info.pca.components)


def scratch_val(results: dict) -> float:
    """The scratch students' mean validation loss."""
    runs = results["runs"]
    return float(runs[runs.arm == SCRATCH].val_loss.mean())


def teacher_table(results: dict, cfg: "Config") -> pd.DataFrame:
    """The teacher beside the mean scratch student: parameters, steps, validation loss,
    training seconds, whether the teacher came from the cache."""
    teacher, runs = results["teacher"], results["runs"]
    return pd.DataFrame(
        {"teacher": [teacher["params"], cfg.teacher_steps, teacher["val_loss"],
                     teacher["train_seconds"], teacher["from_cache"]],
         "scratch student (mean)": [results["student_params"], cfg.student_steps,
                                    scratch_val(results),
                                    runs[runs.arm == SCRATCH].seconds.mean(), "-"]},
        index=["parameters", "training steps", "validation loss (nats/token)",
               "training seconds", "from the cache"])


def timing_table(timing) -> pd.DataFrame:
    """Seconds per step per arm (median and minimum over repeats) and the paired ratio to
    scratch."""
    return pd.DataFrame({arm: {"median s/step": float(np.median(timing.values(arm))),
                               "min s/step": float(np.min(timing.values(arm))),
                               "ratio to scratch": timing.ratio(arm, SCRATCH).mean
                               if arm != SCRATCH else 1.0}
                         for arm in timing.arms}).T


def prose_values(results: dict, table: pd.DataFrame, cfg: "Config") -> dict[str, float | int]:
    """The figures the chapter's prose quotes (glued, never typed), from the results and
    the summary table."""
    teacher, timing, curves = results["teacher"], results["timing"], results["curves"]
    v: dict[str, float | int] = {}
    for arm in ("guide_emb", "guide", "kd", "guide_kd"):
        v[f"share_{arm}"] = float(table.loc[arm, "gap closed"])
    for arm in ("scratch", "guide_emb", "guide", "kd", "guide_kd", "teacher"):
        v[f"loss_{arm}"] = float(table.loc[arm, "test loss"])
    v.update(teacher_val=float(teacher["val_loss"]), student_steps=int(cfg.student_steps),
             eval_every=int(cfg.eval_every),
             student_tokens=int(cfg.student_steps * cfg.batch * cfg.block),
             scratch_val=scratch_val(results), teacher_seconds=float(teacher["train_seconds"]),
             ratio_guide=float(timing.ratio("guide", SCRATCH).mean),
             ratio_kd=float(timing.ratio("kd", SCRATCH).mean),
             fold_full=float(results["fold"]["relative error of block 1"].iloc[0]))
    first = curves[curves.step == 0].groupby("arm").val_loss.mean()
    for arm in (SCRATCH, "guide_emb", "guide"):
        v[f"step0_{arm}"] = float(first[arm])
    last = curves[curves.step == cfg.student_steps].groupby("arm").val_loss.mean()
    sc = share_curves(curves, teacher["val_loss"])
    v["share_first"] = float(sc[(sc.arm == "guide") & (sc.step == cfg.eval_every)].share.mean())
    v["share_last"] = float((last[SCRATCH] - last["guide"]) / (last[SCRATCH] - teacher["val_loss"]))
    r = results["reconstruction"].set_index("d")
    have = cfg.student_d in r.index
    v["ev_student"] = float(r.loc[cfg.student_d, "explained variance"]) if have else float("nan")
    v["recon_student"] = float(r.loc[cfg.student_d, "loss increase"]) if have else float("nan")
    return v


#: The paper's headline numbers (abstract and summaries; the tables were not readable
#: offline): share of the teacher-student gap closed by GUIDE.
PAPER = pd.DataFrame([("400M", "~20B", 26.5), ("1B", "~20B", 25.1)],
                     columns=["student", "training tokens", "gap closed by GUIDE (%)"]).set_index("student")


# ---------------------------------------------------------------- claims (fixed before running)

_ABSTRACT = "abstract"
_NOISE = "below the seed noise (95 % CI includes 0)"

CLAIMS = claims_catalog(
    Claim("guide-closes-gap",
          "GUIDE (embeddings and first block from the teacher, then plain training) closes a "
          "positive share of the teacher-student gap in test loss.",
          "(L_scratch - L_GUIDE) / (L_scratch - L_teacher), paired bootstrap over seeds",
          Rule(0.0), origin=paper(_ABSTRACT), paper_value="26.5 % at 400M, 25.1 % at 1B"),
    Claim("guide-share-at-scale",
          "The share closed is 25-26 % for 400M-1B students trained on about 20B tokens.",
          "share of the gap closed at the paper's scale",
          Untestable("the paper's students are 400M-1B parameters on ~20B tokens; ours have "
                     "~0.2M parameters and see a few hundred thousand tokens, where the "
                     "starting point weighs far more"),
          origin=paper(_ABSTRACT), paper_value="26.5 % (400M), 25.1 % (1B)"),
    Claim("embeddings-close-gap",
          "Initialising only the embeddings (token and position) from the teacher's PCA already "
          "closes a positive share of the gap.",
          "(L_scratch - L_GUIDE-emb) / (L_scratch - L_teacher), paired bootstrap over seeds",
          Rule(0.0), origin=ours("ablation of the mechanism")),
    Claim("first-block-adds",
          "Folding the teacher's first block in as well lowers the test loss beyond the "
          "embeddings alone.",
          "L_GUIDE-emb - L_GUIDE (test loss, nats/token), paired by seed",
          Rule(0.0), origin=ours("the method includes the block; a prototype found the "
                                 "opposite (paper note)")),
    Claim("guide-beats-kd",
          "GUIDE alone beats KD alone.",
          "L_KD - L_GUIDE (test loss, nats/token), paired by seed",
          Rule(0.0), origin=paper(_ABSTRACT), paper_value="GUIDE alone well ahead of KD alone"),
    Claim("guide-kd-beats-guide",
          "Adding KD to GUIDE lowers the test loss further.",
          "L_GUIDE - L_GUIDE+KD (test loss, nats/token), paired by seed",
          Rule(0.0), origin=paper(_ABSTRACT + ": GUIDE and KD combine")),
    Claim("guide-kd-near-additive",
          "GUIDE + KD is near-additive: its gain over scratch is at least 3/4 of the sum of "
          "the gains of GUIDE alone and KD alone.",
          "(L_scratch - L_GUIDE+KD) / ((L_scratch - L_GUIDE) + (L_scratch - L_KD)), paired "
          "bootstrap over seeds; not testable when either gain is below the seed noise",
          Rule(0.75), origin=paper(_ABSTRACT + ": 'near-additive'"),
          paper_value="near-additive (no number offline)"),
    Claim("no-training-overhead",
          "GUIDE adds no training overhead: a GUIDE student's step costs what a scratch "
          "student's does (within 10 %).",
          "step time GUIDE / scratch, interleaved repeats, paired bootstrap",
          Rule(1.10, "below"), origin=paper(_ABSTRACT + ": no training or inference overhead"),
          paper_value="no overhead"),
)


def resolved_diff(a, b, what: str) -> Measurement:
    """Paired difference a - b; an effect below the seed noise (95 % CI includes 0) is
    not testable at this scale, with the numbers in the note."""
    est = paired_diff(a, b)
    if est.ci_low <= 0 <= est.ci_high:
        return Measurement(None, f"{what}: {est.mean:+.4f}, 95% CI [{est.ci_low:+.4f}, "
                                 f"{est.ci_high:+.4f}], n={est.n}: {_NOISE}")
    return Measurement(est, f"{what}, paired by seed")


def measure(results: dict[str, Any]) -> dict[str, Measurement]:
    """One measurement per claim, from :func:`run`'s results: test losses paired by seed,
    shares of the gap by paired bootstrap, the step-time ratio from interleaved repeats."""
    runs, teacher = results["runs"], results["teacher"]
    w = {a: _wide(runs)[a].to_numpy() for a in ARMS}
    base = w[SCRATCH]
    shares = gap_shares(runs, teacher["test_loss"])
    gap = paired_diff(base, np.full_like(base, teacher["test_loss"]))
    note_gap = f"gap scratch - teacher {gap.mean:.3f} nats/token"
    out = {}
    for cid, arm in (("guide-closes-gap", GUIDE), ("embeddings-close-gap", EMB)):
        s = shares[arm]
        out[cid] = (Measurement(s, note_gap) if not s.ci_low <= 0 <= s.ci_high else
                    Measurement(None, f"share {s.mean:+.3f}, 95% CI [{s.ci_low:+.3f}, "
                                      f"{s.ci_high:+.3f}]: {_NOISE}"))
    s = shares[GUIDE]
    out["guide-share-at-scale"] = Measurement(
        None, f"ours: {100 * s.mean:.1f} % (95% CI {100 * s.ci_low:.1f} to {100 * s.ci_high:.1f} %) "
              f"after {results['cfg'].student_steps} steps")
    out["first-block-adds"] = resolved_diff(w[EMB], w[GUIDE], "L_GUIDE-emb - L_GUIDE")
    out["guide-beats-kd"] = resolved_diff(w[KD], w[GUIDE], "L_KD - L_GUIDE")
    out["guide-kd-beats-guide"] = resolved_diff(w[GUIDE], w[GUIDE_KD], "L_GUIDE - L_GUIDE+KD")
    g_guide, g_kd = paired_diff(base, w[GUIDE]), paired_diff(base, w[KD])
    noisy = [n for n, g in (("GUIDE", g_guide), ("KD", g_kd)) if g.ci_low <= 0]
    if noisy:
        out["guide-kd-near-additive"] = Measurement(
            None, f"the gain of {' and '.join(noisy)} over scratch is {_NOISE} or negative")
    else:
        out["guide-kd-near-additive"] = Measurement(
            bootstrap_share(base - w[GUIDE_KD], (base - w[GUIDE]) + (base - w[KD])),
            f"gains: GUIDE {g_guide.mean:.3f}, KD {g_kd.mean:.3f}, GUIDE + KD "
            f"{paired_diff(base, w[GUIDE_KD]).mean:.3f} nats/token")
    timing = results["timing"]
    gate = timing.gate()
    init_s = runs.loc[runs.arm == GUIDE, "init_seconds"].mean()
    train_s = runs.loc[runs.arm == SCRATCH, "seconds"].mean()
    out["no-training-overhead"] = Measurement(
        timing.ratio(GUIDE, SCRATCH),
        f"{timing.repeats} interleaved repeats of {results['cfg'].time_steps} steps, one "
        f"thread; same architecture and parameter count; the one-off init takes "
        f"{init_s:.3f} s ({100 * init_s / train_s:.2f} % of a student's training); KD / "
        f"scratch {timing.ratio(KD, SCRATCH).mean:.2f}; " + (gate or "machine quiet"))
    return out
