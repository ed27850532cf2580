"""The small language-model stack shared by chapters 07 (LAuReL) and 08 (GUIDE).

One module, read top to bottom like nanoGPT:

- **Text and tokens.** :func:`load_text` reads a registry corpus ("tinyshakespeare",
  "wikitext2/valid", "wikitext2/test"); :class:`CharTokenizer` (one id per character) and
  :func:`bpe_tokenizer` (byte-level BPE trained with the ``tokenizers`` package, the
  vocabulary size a parameter, saved under ``data.cache_dir()/tokenizers`` with the hash
  of its training text in the file name) turn it into ids; :func:`split_ids` cuts them
  into contiguous train / validation / test parts, and :func:`corpus_splits` does all of
  it for a registry corpus (BPE trained on the training part only).
- **Batches.** :func:`random_windows` draws a batch of (input, next-token target) windows
  from a seeded generator; :func:`fixed_windows` gives the fixed evaluation windows.
- **The model.** :class:`GPT`: token + position embedding, pre-norm :class:`Block` s of
  causal self-attention (``F.scaled_dot_product_attention``) and a GELU MLP, a final
  LayerNorm and a tied or untied head. Each block is written as a residual
  ``x + block.branch(x)``; :func:`wrap_residuals` replaces every block by
  ``factory(block, index)``, which may call ``block.branch`` and combine it with ``x``
  any other way (chapter 07 wraps the residual with LAuReL) without editing the block.
- **Optimisation.** :func:`param_groups` / :func:`make_optimizer`: AdamW whose decay
  group holds the matrices and embeddings, never biases or norms, and never a parameter
  an ``exclude(name, param)`` predicate names; :func:`warmup_cosine`: linear warm-up,
  then cosine decay to ``min_ratio`` of the peak.
- **Training, evaluation and timing.** :func:`train` (a fixed number of steps, a
  pluggable ``loss_fn`` such as a distillation loss, the validation loss every
  ``eval_every`` steps), :func:`evaluate` (mean cross-entropy in
  nats per token on fixed windows), :func:`time_steps` (interleaved training steps of
  several models, :mod:`effdl_lib.toolkits.bench`).

Which chapter explains it: chapter 07 (``notebooks/07_laurel.py``), section "The
language-model stack".
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import data as _data
from ..runtime import is_quiet

CORPORA = ("tinyshakespeare", "wikitext2/valid", "wikitext2/test")


# ---------------------------------------------------------------- text and tokens

def load_text(name: str) -> str:
    """The text of a registry corpus, checked against its sha256 (:func:`data.path`)."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    return _data.path(name).read_text(encoding="utf-8")


class CharTokenizer:
    """One id per distinct character of the training text, in sorted order."""

    kind = "char"

    def __init__(self, text: str):
        if not text:
            raise ValueError("cannot build a character vocabulary from empty text")
        self.chars = sorted(set(text))
        self._id = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self._id))
        if unknown:
            raise ValueError(f"characters outside the vocabulary: {unknown[:10]!r}")
        return [self._id[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class BPETokenizer:
    """A byte-level BPE vocabulary (``tokenizers``): every string encodes, and decoding
    gives the string back exactly."""

    kind = "bpe"

    def __init__(self, tok, path: Path | None = None):
        self._tok, self.path = tok, path

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids])


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bpe_tokenizer(text: str, vocab_size: int, name: str = "corpus",
                  cache: Path | None = None) -> BPETokenizer:
    """Train (or load) a byte-level BPE vocabulary of ``vocab_size`` ids on ``text``.

    Saved as ``<cache>/tokenizers/bpe-<name>-<vocab_size>-<text sha256[:16]>.json``
    (written to a temporary name, then renamed), so a changed text trains a new
    vocabulary and a killed run leaves no half file. A file that does not load is
    retrained."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not 257 <= vocab_size <= 1 << 20:
        raise ValueError(f"vocab_size must be an int in [257, 1048576] (256 bytes + merges), "
                         f"got {vocab_size!r}")
    if not text:
        raise ValueError("cannot train a BPE vocabulary on empty text")
    folder = (cache or _data.cache_dir()) / "tokenizers"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"bpe-{name.replace('/', '_')}-{vocab_size}-{text_hash(text)[:16]}.json"
    if target.exists():
        try:
            return BPETokenizer(Tokenizer.from_file(str(target)), target)
        except Exception as exc:  # noqa: BLE001  (a corrupt file is rebuilt, never trusted)
            print(f"warning: {target.name} does not load ({exc}); retraining it")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer=trainer)
    tmp = target.with_suffix(".part")
    tok.save(str(tmp))
    tmp.replace(target)
    return BPETokenizer(tok, target)


def make_tokenizer(kind: str, text: str, vocab_size: int | None = None, name: str = "corpus"):
    """``"char"`` (``vocab_size`` ignored) or ``"bpe"`` (``vocab_size`` required)."""
    if kind == "char":
        return CharTokenizer(text)
    if kind == "bpe":
        if vocab_size is None:
            raise ValueError("a BPE tokenizer needs vocab_size")
        return bpe_tokenizer(text, vocab_size, name)
    raise ValueError(f"tokenizer kind must be 'char' or 'bpe', not {kind!r}")


@dataclass(frozen=True)
class Splits:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def split_ids(ids: Sequence[int] | torch.Tensor, val: float = 0.05, test: float = 0.05) -> Splits:
    """Contiguous train / validation / test parts (in that order, no overlap): text
    windows overlap their neighbours, so random splits would leak."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val and test fractions must be in [0, 1) with sum < 1, got {val}, {test}")
    n = len(ids)
    n_val, n_test = int(n * val), int(n * test)
    n_train = n - n_val - n_test
    return Splits(ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:])


def corpus_splits(name: str, kind: str = "char", vocab_size: int | None = None,
                  val: float = 0.05, test: float = 0.05):
    """(tokenizer, :class:`Splits`) of a registry corpus: the text is cut into contiguous
    train / validation / test parts first, a BPE vocabulary is trained on the training
    part only, and each part is encoded on its own. A character vocabulary covers the whole
    text (it is the set of symbols, not a statistic fitted to the training part)."""
    text = load_text(name)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val and test fractions must be in [0, 1) with sum < 1, got {val}, {test}")
    n = len(text)
    n_val, n_test = int(n * val), int(n * test)
    n_train = n - n_val - n_test
    parts = text[:n_train], text[n_train:n_train + n_val], text[n_train + n_val:]
    tok = make_tokenizer(kind, text if kind == "char" else parts[0], vocab_size,
                         f"{name}-train-{val:g}-{test:g}")
    ids = [torch.tensor(tok.encode(p), dtype=torch.long) for p in parts]
    return tok, Splits(*ids)


# ---------------------------------------------------------------- batches

def _check_windows(ids: torch.Tensor, block: int) -> None:
    if block < 1 or len(ids) < block + 1:
        raise ValueError(f"need at least block + 1 = {block + 1} tokens, got {len(ids)}")


def random_windows(ids: torch.Tensor, block: int, batch: int, gen: torch.Generator):
    """A batch of ``batch`` windows at random starts (from ``gen``): inputs
    ``ids[s:s+block]`` and targets ``ids[s+1:s+block+1]``."""
    _check_windows(ids, block)
    starts = torch.randint(0, len(ids) - block, (batch,), generator=gen)
    return windows_at(ids, starts, block)


def windows_at(ids: torch.Tensor, starts: torch.Tensor, block: int):
    offs = torch.arange(block)
    idx = starts[:, None] + offs[None, :]
    return ids[idx], ids[idx + 1]


def fixed_windows(ids: torch.Tensor, block: int, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` window starts, fixed by ``seed``, spread over the whole part (the same for
    every arm, so evaluation losses are paired)."""
    _check_windows(ids, block)
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(ids) - block, (n,), generator=gen)


# ---------------------------------------------------------------- the model

@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block: int = 128        # context length
    n_layer: int = 4
    d_model: int = 64
    n_head: int = 4
    mlp_ratio: int = 4
    tied: bool = True       # head shares the token embedding

    def __post_init__(self):
        for name in ("vocab_size", "block", "n_layer", "d_model", "n_head", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer layer written as one residual: ``x + branch(x)`` with
    ``branch(x) = a + mlp(ln2(x + a))``, ``a = attn(ln1(x))``; the same function as the
    usual two adds."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False),
                                 nn.GELU(),
                                 nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False))

    def branch(self, x):
        a = self.attn(self.ln1(x))
        return a + self.mlp(self.ln2(x + a))

    def forward(self, x):
        return x + self.branch(x)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.block, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied:
            self.head.weight = self.tok.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual outputs scaled by depth
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None):
        t = idx.shape[1]
        if t > self.cfg.block:
            raise ValueError(f"sequence length {t} exceeds the context length {self.cfg.block}")
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def wrap_residuals(blocks: nn.ModuleList, factory: Callable[[nn.Module, int], nn.Module]) -> nn.ModuleList:
    """Replace ``blocks[i]`` by ``factory(blocks[i], i)`` in place and return the list.

    Every block must be a residual ``x + block.branch(x)``; the wrapper receives the block
    (parameters and all) and decides how ``branch(x)`` and ``x`` are combined."""
    for i, block in enumerate(blocks):
        if not callable(getattr(block, "branch", None)):
            raise TypeError(f"block {i} ({type(block).__name__}) has no branch(x); only "
                            f"residual blocks x + branch(x) can be wrapped")
        blocks[i] = factory(block, i)
    return blocks


def n_params(model: nn.Module) -> int:
    """Distinct parameters (a tied head counts once)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- optimisation

def param_groups(model: nn.Module, weight_decay: float,
                 exclude: Callable[[str, nn.Parameter], bool] | None = None) -> list[dict]:
    """Two AdamW groups: decay for matrices and embeddings (``p.dim() >= 2``), no decay
    for biases, norms, and every parameter ``exclude(name, p)`` names. Each group keeps
    its parameter names in ``"names"``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.dim() < 2 or (exclude is not None and exclude(name, p))
        (no_decay if skip else decay).append((name, p))
    return [{"params": [p for _, p in decay], "names": [n for n, _ in decay],
             "weight_decay": weight_decay},
            {"params": [p for _, p in no_decay], "names": [n for n, _ in no_decay],
             "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                   exclude: Callable[[str, nn.Parameter], bool] | None = None,
                   betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    if lr <= 0 or weight_decay < 0:
        raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {lr}, {weight_decay}")
    return torch.optim.AdamW(param_groups(model, weight_decay, exclude), lr=lr, betas=betas)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Learning-rate multiplier: ``(step + 1) / warmup`` during warm-up, then cosine from
    1 to ``min_ratio`` at ``total``."""
    if total < 1 or not 0 <= warmup <= total or not 0 <= min_ratio <= 1:
        raise ValueError(f"need 0 <= warmup <= total, total >= 1, 0 <= min_ratio <= 1; got "
                         f"warmup={warmup}, total={total}, min_ratio={min_ratio}")
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- training and evaluation

@torch.no_grad()
def evaluate(model: nn.Module, ids: torch.Tensor, starts: torch.Tensor, block: int,
             batch: int = 64) -> float:
    """Mean next-token cross-entropy (nats per token) over the windows at ``starts``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        x, y = windows_at(ids, starts[i:i + batch], block)
        _, loss = model(x.to(device), y.to(device))
        total += float(loss) * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


@dataclass
class TrainResult:
    train_loss: list[float]          # every step
    eval_steps: list[int]            # steps after which the validation loss was taken
    eval_loss: list[float]
    seconds: float


def next_token_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default training loss: mean next-token cross-entropy."""
    return model(x, y)[1]


def train(model: nn.Module, ids: torch.Tensor, *, steps: int, batch: int, block: int,
          lr: float, seed: int, warmup: int = 0, weight_decay: float = 0.1,
          min_lr_ratio: float = 0.1, exclude: Callable[[str, nn.Parameter], bool] | None = None,
          grad_clip: float | None = 1.0, eval_ids: torch.Tensor | None = None,
          eval_starts: torch.Tensor | None = None, eval_every: int = 0,
          loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] = next_token_loss,
          desc: str = "train") -> TrainResult:
    """AdamW with warm-up + cosine for ``steps`` steps on random windows drawn from a
    generator seeded with ``seed`` (the same batches for every arm of a seed).

    ``loss_fn(model, x, y)`` is the training loss (default :func:`next_token_loss`); a
    distillation loss against a teacher's logits on the same ``x`` plugs in here. The
    validation curve is always the next-token cross-entropy (:func:`evaluate`)."""
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    device = next(model.parameters()).device
    opt = make_optimizer(model, lr, weight_decay, exclude)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup, steps, min_lr_ratio))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses, ev_steps, ev_loss = [], [], []
    want_eval = eval_every > 0 and eval_ids is not None and eval_starts is not None
    t0 = time.perf_counter()
    for step in tqdm(range(steps), desc=desc, disable=is_quiet(), leave=False, mininterval=2.0):
        x, y = random_windows(ids, block, batch, gen)
        loss = loss_fn(model, x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        # clone: a bare detach() kept each step's buffers alive (about one logits tensor,
        # 8 MB per step at 1,024 tokens x 2,048 ids: 10 GB over 1,200 steps)
        losses.append(loss.detach().clone())
        if want_eval and ((step + 1) % eval_every == 0 or step + 1 == steps):
            ev_steps.append(step + 1)
            ev_loss.append(evaluate(model, eval_ids, eval_starts, block))
    model.eval()
    return TrainResult(torch.stack(losses).tolist(), ev_steps, ev_loss, time.perf_counter() - t0)


# ---------------------------------------------------------------- timing

def time_steps(models: Mapping[str, nn.Module], ids: torch.Tensor, *, batch: int, block: int,
               steps_per_repeat: int = 3, repeats: int = 7, warmup: int = 1, seed: int = 0):
    """Seconds per training step (forward, backward, AdamW step) of each model, the arms
    interleaved and rotated by :func:`bench.interleave`; every arm trains on the same
    batches (moved to each model's device; CUDA is synchronised around each step).
    Returns the :class:`bench.BenchResult`; per repeat and arm, metric "value" is the
    fastest of its ``steps_per_repeat`` steps (interference only adds time) and "mean"
    their mean, in seconds."""
    from . import bench
    if steps_per_repeat < 1:
        raise ValueError(f"steps_per_repeat must be >= 1, got {steps_per_repeat}")
    gen = torch.Generator().manual_seed(seed)
    batches = [random_windows(ids, block, batch, gen) for _ in range(steps_per_repeat)]

    def arm(model):
        opt = make_optimizer(model, 1e-4, 0.0)
        model.train()
        device = next(model.parameters()).device
        on_device = [(x.to(device), y.to(device)) for x, y in batches]
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def run() -> dict[str, float]:
            times = []
            for x, y in on_device:
                sync()
                t0 = time.perf_counter()
                _, loss = model(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sync()
                times.append(time.perf_counter() - t0)
            return {"value": min(times), "mean": sum(times) / len(times)}
        return run

    return bench.interleave({name: arm(m) for name, m in models.items()}, repeats=repeats,
                            warmup=warmup)
