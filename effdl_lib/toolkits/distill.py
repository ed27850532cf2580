"""The distillation toolkit shared by chapters 01, 04, 05 and 06.

The setting of chapters 04-06 (Weighted Distillation, SLaM, Robust Active Distillation):
a few labels L train a teacher; the teacher labels a large unlabeled pool U; a small
student trains on L plus the pseudo-labelled U; a small labelled validation set V
measures how reliable the teacher is; a test split scores the students.

- :func:`load_dataset`, :func:`make_splits`: seeded L / V / U / test splits, checked
  disjoint by index (one index space: official train rows, then official test rows).
- :func:`teacher_outputs`: one teacher per (data, split, seed, teacher config), its logits
  on L, V, U and test cached on disk under ``data.cache_dir()/teachers``, written
  atomically; a cache file that fails its checks is rebuilt, never trusted.
- :func:`hard_labels`, :func:`soft_labels`, :func:`margin`, :func:`topk_correct`.
- :func:`kd_loss` (Hinton et al. 2015) and :func:`distill_loss`, the per-example weighted
  loss with two parts (cross-entropy on L, T^2-scaled soft cross-entropy on U).
- :func:`fit_calibration`: isotonic regression (scikit-learn) of "teacher correct" on a
  score such as the margin, cross-fitted so V is never used to fit and evaluate at once.
- :func:`synthetic_teacher`: the positive control, pseudo-labels whose per-example
  accuracy is known and depends on the input.
- :func:`run_paired`: every arm on every seed, interleaved, as a tidy DataFrame.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import data as _data
from ..runtime import Runtime, set_seed
from ..stats import Estimate, paired_diff, paired_values
from ..training import predict_logits, train

# ---------------------------------------------------------------- losses


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al. (2015): T^2 * KL(softmax(t/T) || softmax(s/T)), mean over the batch.

    The T^2 factor keeps gradient magnitudes comparable across temperatures. No gradient
    reaches the teacher's logits (they are detached)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return kl.mean() * t * t


def soft_cross_entropy(student_logits: torch.Tensor, target_probs: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """Per-example -sum_k p_k log softmax(s/T)_k (no reduction). With one-hot targets
    and T=1 it is the usual cross-entropy; it differs from the KL of :func:`kd_loss` by
    the targets' entropy, a constant for the student."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if target_probs.shape != student_logits.shape:
        raise ValueError(f"targets {tuple(target_probs.shape)} do not match logits "
                         f"{tuple(student_logits.shape)}")
    return -(target_probs.detach() * F.log_softmax(student_logits / temperature, dim=1)).sum(1)


def distill_loss(student_logits: torch.Tensor, target_probs: torch.Tensor,
                 side: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The weighted two-part loss for L plus pseudo-labelled U, mean over the batch.

    ``side`` is [batch, 2]: column 0 the example's weight, column 1 whether it is
    pseudo-labelled (1) or truly labelled (0). Labelled rows: cross-entropy at T=1.
    Pseudo-labelled rows: T^2 * soft cross-entropy at temperature T (their targets are
    already softened at T, see :func:`soft_labels`). Each row's loss is multiplied by its
    weight; the mean is over the batch (not over the weights), as in importance-weighted
    empirical risk. Use with ``training.train(..., weights=side)``."""
    if side.ndim != 2 or side.shape[1] != 2 or len(side) != len(student_logits):
        raise ValueError(f"side must be [batch, 2] (weight, is_pseudo), got {tuple(side.shape)}")
    w, pseudo = side[:, 0], side[:, 1] > 0.5
    if bool((w < 0).any()):
        raise ValueError("example weights must be non-negative")
    per = torch.where(pseudo,
                      soft_cross_entropy(student_logits, target_probs, temperature) * temperature ** 2,
                      soft_cross_entropy(student_logits, target_probs, 1.0))
    return (w * per).mean()


# ---------------------------------------------------------------- pseudo-labels and margins


def hard_labels(logits: torch.Tensor) -> torch.Tensor:
    """The teacher's argmax class per row."""
    return torch.as_tensor(logits).argmax(1)


def soft_labels(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(logits / T) per row."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return F.softmax(torch.as_tensor(logits).float() / temperature, dim=1)


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(torch.as_tensor(labels).long(), n_classes).float()


def margin(logits: torch.Tensor) -> np.ndarray:
    """Top-1 minus top-2 softmax probability per row, in [0, 1]."""
    probs = F.softmax(torch.as_tensor(logits).float(), dim=1)
    if probs.shape[1] < 2:
        raise ValueError("a margin needs at least two classes")
    top2 = probs.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).numpy().astype(np.float64)


def topk_correct(logits: torch.Tensor, y, k: int = 1) -> np.ndarray:
    """Whether the true label is among the k largest logits, per row."""
    logits = torch.as_tensor(logits)
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k must be in [1, {logits.shape[1]}], got {k}")
    top = logits.topk(k, dim=1).indices
    return (top == torch.as_tensor(np.asarray(y)).long().view(-1, 1)).any(1).numpy()


# ---------------------------------------------------------------- datasets and splits

#: per-dataset pixel mean and std (of the official training images, in [0, 1]).
NORMALIZATION = {"mnist": ((0.1307,), (0.3081,)), "fashion": ((0.2860,), (0.3530,)),
                 "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}


@dataclass(frozen=True, eq=False)
class LabeledData:
    """One dataset in one index space: rows [0, n_train) are the official training
    images, rows [n_train, n) the official test images. ``x`` is uint8 [n, H, W] (gray)
    or [n, H, W, 3] (colour); ``y`` int64 class labels."""
    name: str
    x: np.ndarray
    y: np.ndarray
    n_classes: int
    n_train: int

    def __post_init__(self):
        if self.x.dtype != np.uint8 or self.x.ndim not in (3, 4):
            raise ValueError(f"x must be uint8 [n,H,W] or [n,H,W,C], got {self.x.dtype} {self.x.shape}")
        if self.y.shape != (len(self.x),):
            raise ValueError(f"y must be [{len(self.x)}], got {self.y.shape}")
        if not 0 < self.n_train <= len(self.x):
            raise ValueError(f"n_train must be in [1, {len(self.x)}], got {self.n_train}")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            raise ValueError(f"labels must lie in [0, {self.n_classes})")

    def __len__(self) -> int:
        return len(self.x)

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 of the name, shapes, pixels and labels (16 hex digits)."""
        h = hashlib.sha256(f"{self.name}|{self.x.shape}|{self.n_train}|{self.n_classes}".encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y).astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    @property
    def channels(self) -> int:
        return 1 if self.x.ndim == 3 else self.x.shape[3]

    def tensor(self, rows) -> torch.Tensor:
        """Rows as float [k, C, H, W] in [0, 1]."""
        return to_tensor(self.x[np.asarray(rows)])

    def labels(self, rows) -> torch.Tensor:
        return torch.from_numpy(self.y[np.asarray(rows)].astype(np.int64))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [n,H,W] or [n,H,W,C] -> float [n,C,H,W] in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 [n,H,W] or [n,H,W,C] images, got {images.dtype} {images.shape}")
    t = torch.from_numpy(images.astype(np.float32) / 255.0)
    return t.unsqueeze(1) if images.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


DATASETS = ("fashion", "mnist", "cifar10")


def load_dataset(name: str) -> LabeledData:
    """Fashion-MNIST, MNIST (gray 28x28) or CIFAR-10 (colour 32x32), train then test."""
    if name in ("fashion", "mnist"):
        x, y = _data.load_image_set(name, "train")
        tx, ty = _data.load_image_set(name, "test")
        return LabeledData(name, np.concatenate([x, tx]), np.concatenate([y, ty]), 10, len(x))
    if name == "cifar10":
        x, y = _cifar10_rgb("train")
        tx, ty = _cifar10_rgb("test")
        return LabeledData(name, np.concatenate([x, tx]), np.concatenate([y, ty]), 10, len(x))
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def _cifar10_rgb(split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 colour images and labels from the registry's JPEG archive (labels from
    the class folder names), decoded once and cached as .npz (atomically)."""
    cached = _data.cache_dir() / f"cifar10_{split}_rgb_jpeg.npz"
    if cached.exists():
        try:
            with np.load(cached) as z:
                return z["x"], z["y"]
        except Exception:  # corrupt cache: decode again
            pass
    from PIL import Image
    items = []
    with tarfile.open(_data.path("cifar10/jpeg"), "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and member.name.endswith(".jpg") and len(parts) >= 3 \
                    and parts[-3] == split:
                label = CIFAR10_CLASSES.index(parts[-2])
                img = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
                items.append((member.name, img, label))
    if not items:
        raise _data.DataError(f"cifar10/jpeg: no {split}/<class>/*.jpg members found")
    items.sort(key=lambda item: item[0])
    x = np.stack([img for _, img, _ in items])
    y = np.array([lab for _, _, lab in items], dtype=np.int64)
    _atomic_savez(cached, x=x, y=y)
    return x, y


@dataclass(frozen=True, eq=False)
class Splits:
    """Row indices of one seed's labelled (L), validation (V), unlabeled (U) and test sets."""
    seed: int
    labeled: np.ndarray
    val: np.ndarray
    unlabeled: np.ndarray
    test: np.ndarray

    PARTS = ("labeled", "val", "unlabeled", "test")

    def __getitem__(self, part: str) -> np.ndarray:
        if part not in self.PARTS:
            raise KeyError(f"unknown part {part!r}; parts are {', '.join(self.PARTS)}")
        return getattr(self, part)

    def check(self, data: LabeledData | None = None) -> None:
        """Raise ValueError unless the four parts are disjoint, free of duplicates, inside
        the dataset, and (given ``data``) L, V, U come from its training rows and test
        from its test rows."""
        seen: dict[int, str] = {}
        for part in self.PARTS:
            rows = self[part]
            if len(np.unique(rows)) != len(rows):
                raise ValueError(f"split {part} holds duplicate rows")
            for r in rows[np.isin(rows, np.fromiter(seen, dtype=np.int64, count=len(seen)))][:1]:
                raise ValueError(f"row {int(r)} is in both {seen[int(r)]} and {part}")
            seen.update(dict.fromkeys(rows.tolist(), part))
        if data is not None:
            for part in ("labeled", "val", "unlabeled"):
                if len(self[part]) and (self[part].min() < 0 or self[part].max() >= data.n_train):
                    raise ValueError(f"{part} must use training rows [0, {data.n_train})")
            if len(self.test) and (self.test.min() < data.n_train or self.test.max() >= len(data)):
                raise ValueError(f"test must use test rows [{data.n_train}, {len(data)})")

    @property
    def key(self) -> str:
        h = hashlib.sha256(str(self.seed).encode())
        for part in self.PARTS:
            h.update(part.encode())
            h.update(np.ascontiguousarray(self[part], dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def sizes(self) -> dict[str, int]:
        return {part: len(self[part]) for part in self.PARTS}


def make_splits(data: LabeledData, n_labeled: int, n_val: int, n_unlabeled: int,
                seed: int, n_test: int | None = None) -> Splits:
    """Seeded disjoint splits. V and U are drawn first from the training rows and L after
    them, so a sweep over ``n_labeled`` keeps V and U fixed and the smaller L a prefix of
    the larger. Test is ``n_test`` of the official test rows (all by default)."""
    for name, v in (("n_labeled", n_labeled), ("n_val", n_val), ("n_unlabeled", n_unlabeled)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    need = n_labeled + n_val + n_unlabeled
    if need > data.n_train:
        raise ValueError(f"n_labeled + n_val + n_unlabeled = {need} exceeds the {data.n_train} "
                         f"training rows of {data.name}")
    n_test_rows = len(data) - data.n_train
    if n_test is not None and not 1 <= n_test <= n_test_rows:
        raise ValueError(f"n_test must be in [1, {n_test_rows}], got {n_test}")
    rng = np.random.default_rng([int(seed), 0x5EED])
    perm = rng.permutation(data.n_train)
    val = perm[:n_val]
    unlabeled = perm[n_val:n_val + n_unlabeled]
    labeled = perm[n_val + n_unlabeled:need]
    test = np.arange(data.n_train, len(data))
    if n_test is not None and n_test < n_test_rows:
        test = np.sort(rng.choice(test, size=n_test, replace=False))
    splits = Splits(int(seed), labeled.astype(np.int64), val.astype(np.int64),
                    unlabeled.astype(np.int64), test.astype(np.int64))
    splits.check(data)
    return splits


# ---------------------------------------------------------------- models


class Standardize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


ARCHS = ("cnn", "cnn_bn", "mlp")


def make_model(arch: str, data: LabeledData, width: int) -> nn.Module:
    """``cnn``: two 3x3 conv blocks (width, 2*width channels) and a 64-unit head;
    ``cnn_bn``: three conv blocks with batch norm (width, 2w, 4w) for colour 32x32;
    ``mlp``: one hidden layer of ``width`` units. All start with per-dataset
    standardisation."""
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    mean, std = NORMALIZATION.get(data.name, ((0.5,) * data.channels, (0.25,) * data.channels))
    c = data.channels
    h, w = data.x.shape[1:3]
    if arch == "cnn":
        return nn.Sequential(
            Standardize(mean, std),
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), 64), nn.ReLU(),
            nn.Linear(64, data.n_classes))
    if arch == "cnn_bn":
        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                    nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                    nn.MaxPool2d(2)]
        return nn.Sequential(Standardize(mean, std), *block(c, width), *block(width, 2 * width),
                             *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4 * width, data.n_classes))
    if arch == "mlp":
        return nn.Sequential(Standardize(mean, std), nn.Flatten(), nn.Linear(c * h * w, width),
                             nn.ReLU(), nn.Linear(width, data.n_classes))
    raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- the cached teacher


@dataclass(frozen=True)
class TeacherConfig:
    """How a teacher is trained on L: architecture, width and optimisation budget."""
    arch: str = "cnn"
    width: int = 16
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown teacher architecture {self.arch!r}; choose from {', '.join(ARCHS)}")
        for name in ("width", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"teacher {name} must be positive, got {getattr(self, name)}")
        if not 0 < self.lr < 1 or self.weight_decay < 0:
            raise ValueError(f"teacher lr must be in (0, 1) and weight_decay >= 0, got "
                             f"{self.lr}, {self.weight_decay}")


@dataclass(frozen=True)
class TeacherOutputs:
    """A teacher's logits on each split part, its accuracies, and where they came from."""
    key: str
    logits: dict[str, torch.Tensor]
    accuracy: dict[str, float]
    from_cache: bool
    path: Path
    train_seconds: float  # of the run that trained it (stored in the cache)

    def __getitem__(self, part: str) -> torch.Tensor:
        return self.logits[part]


CACHE_VERSION = 1


@functools.lru_cache(maxsize=1)
def teacher_code_hash() -> str:
    """Hash of the code that decides a teacher's logits (its model builder, its training
    and the training loop; comments and docstrings ignored), so a cached teacher from
    older code is never reused."""
    import inspect

    from .. import training
    from ..provenance import python_code_hash
    parts = [inspect.getsource(f) for f in (make_model, Standardize, train_teacher,
                                            training.train, training.batches,
                                            training.predict_logits)]
    return python_code_hash("\n".join(parts) + repr(NORMALIZATION))


def teacher_key(data: LabeledData, splits: Splits, cfg: TeacherConfig) -> str:
    """Hash of the data, the split (with its seed), the teacher config and the code that
    trains it."""
    blob = json.dumps({"v": CACHE_VERSION, "data": data.fingerprint, "split": splits.key,
                       "seed": splits.seed, "teacher": dataclasses.asdict(cfg),
                       "code": teacher_code_hash()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def teacher_cache_dir() -> Path:
    path = _data.cache_dir() / "teachers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _payload_digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _atomic_savez(path: Path, **arrays) -> None:
    """Write an .npz under a temporary name in the same folder, then rename it into
    place: a killed run never leaves half a file under ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_teacher_file(path: Path, key: str, splits: Splits) -> tuple[dict, dict]:
    """Read and verify one cache file; any problem raises (the caller rebuilds)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {part: z[part] for part in Splits.PARTS}
    if meta.get("key") != key:
        raise ValueError(f"key {meta.get('key')} != {key}")
    if meta.get("digest") != _payload_digest(arrays):
        raise ValueError("payload digest mismatch")
    for part, a in arrays.items():
        if a.ndim != 2 or len(a) != len(splits[part]) or not np.all(np.isfinite(a)):
            raise ValueError(f"bad logits for {part}: {a.shape}")
    return arrays, meta


def train_teacher(data: LabeledData, splits: Splits, cfg: TeacherConfig, rt: Runtime) -> nn.Module:
    """Cross-entropy on L only, seeded by the split's seed (same teacher per seed)."""
    set_seed(splits.seed)
    model = make_model(cfg.arch, data, cfg.width)
    train(model, data.tensor(splits.labeled), data.labels(splits.labeled), F.cross_entropy,
          steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
          weight_decay=cfg.weight_decay, rt=dataclasses.replace(rt, seed=splits.seed),
          desc=f"teacher seed {splits.seed}")
    return model


def teacher_outputs(data: LabeledData, splits: Splits, cfg: TeacherConfig, rt: Runtime,
                    cache: bool = True) -> TeacherOutputs:
    """The teacher's logits on L, V, U and test: from the disk cache when a valid file
    exists for this (data, split, seed, config), else trained once and stored.

    A cache file that cannot be read, has another key, fails its digest or has
    wrong shapes is rebuilt with a warning, never trusted."""
    splits.check(data)
    key = teacher_key(data, splits, cfg)
    path = teacher_cache_dir() / f"{data.name}-{key}.npz"
    if cache and path.exists():
        try:
            arrays, meta = _load_teacher_file(path, key, splits)
        except Exception as exc:  # noqa: BLE001 - any failure means: do not trust it
            warnings.warn(f"teacher cache {path.name} is unusable ({type(exc).__name__}: "
                          f"{exc}); retraining the teacher", RuntimeWarning, stacklevel=2)
        else:
            return _outputs(data, splits, key, arrays, True, path, meta.get("train_seconds", 0.0))
    t0 = time.perf_counter()
    model = train_teacher(data, splits, cfg, rt)
    seconds = time.perf_counter() - t0
    arrays = {part: predict_logits(model, data.tensor(splits[part]), rt).numpy()
              for part in Splits.PARTS}
    meta = {"key": key, "digest": _payload_digest(arrays), "train_seconds": seconds,
            "teacher": dataclasses.asdict(cfg), "data": data.fingerprint, "seed": splits.seed}
    if cache:
        _atomic_savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return _outputs(data, splits, key, arrays, False, path, seconds)


def _outputs(data, splits, key, arrays, from_cache, path, seconds) -> TeacherOutputs:
    logits = {part: torch.from_numpy(np.asarray(a, dtype=np.float32)) for part, a in arrays.items()}
    acc = {part: float(topk_correct(logits[part], data.y[splits[part]]).mean())
           if len(splits[part]) else float("nan") for part in Splits.PARTS}
    return TeacherOutputs(key, logits, acc, from_cache, path, float(seconds))


# ---------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """P(teacher correct | score) as a monotone step function.

    ``model`` is fitted on all of V and is what gets applied to U; ``oof`` holds V's
    out-of-fold predictions (each example predicted by a fit that never saw it), for
    judging the calibration on V without using an example to fit and evaluate at once."""
    model: Any
    oof: np.ndarray
    folds: np.ndarray

    def __call__(self, score) -> np.ndarray:
        return np.asarray(self.model.predict(np.asarray(score, dtype=np.float64)), dtype=np.float64)


def _check_score_correct(score, correct) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64)
    c = np.asarray(correct)
    if s.ndim != 1 or c.shape != s.shape:
        raise ValueError(f"score and correct must be 1-D of equal length, got {s.shape}, {c.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if not np.all((c == 0) | (c == 1)):
        raise ValueError("correct must hold 0/1 (or booleans)")
    return s, c.astype(np.float64)


def fit_isotonic(score, correct):
    """scikit-learn's IsotonicRegression, increasing, clipped to [0, 1] and to the fitted
    score range."""
    from sklearn.isotonic import IsotonicRegression
    s, c = _check_score_correct(score, correct)
    if len(s) < 2:
        raise ValueError("isotonic calibration needs at least two examples")
    return IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                              out_of_bounds="clip").fit(s, c)


def fit_calibration(score, correct, n_folds: int = 5, seed: int = 0) -> Calibration:
    """Isotonic regression of teacher correctness on ``score`` (e.g. the margin) over V,
    cross-fitted over ``n_folds`` random folds for the out-of-fold predictions."""
    s, c = _check_score_correct(score, correct)
    if n_folds < 2 or len(s) < 2 * n_folds:
        raise ValueError(f"need n_folds >= 2 and at least {2 * n_folds} examples, got "
                         f"n_folds={n_folds}, {len(s)} examples")
    folds = np.random.default_rng([seed, 0xCA1]).permutation(len(s)) % n_folds
    oof = np.empty(len(s))
    for f in range(n_folds):
        held = folds == f
        oof[held] = fit_isotonic(s[~held], c[~held]).predict(s[held])
    return Calibration(fit_isotonic(s, c), oof, folds)


def binned_accuracy(score, correct, bins: int = 10, edges=None) -> pd.DataFrame:
    """Accuracy per quantile bin of ``score`` (or per given ``edges``): bin edges,
    mean score, accuracy and count, one row per non-empty bin."""
    s, c = _check_score_correct(score, correct)
    if edges is None:
        edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)))
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
    rows = [{"lo": edges[b], "hi": edges[b + 1], "score": s[idx == b].mean(),
             "accuracy": c[idx == b].mean(), "n": int((idx == b).sum())}
            for b in range(len(edges) - 1) if (idx == b).any()]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- positive control


@dataclass(frozen=True)
class SyntheticTeacher:
    """Pseudo-labels with known per-example accuracy ``accuracy`` (in the rows' order)."""
    logits: torch.Tensor     # log of the stated probabilities: a(x) on the label given
    accuracy: np.ndarray     # a(x), the probability the label given is the true one
    correct: np.ndarray      # whether it is, as drawn


def intensity_rank(data: LabeledData) -> np.ndarray:
    """Each row's mean pixel intensity as its rank in [0, 1] over the whole dataset."""
    mean = data.x.reshape(len(data), -1).mean(1)
    order = np.argsort(mean, kind="stable")
    rank = np.empty(len(data))
    rank[order] = np.arange(len(data)) / max(len(data) - 1, 1)
    return rank


NOISE_KINDS = ("uniform", "permuted")


def synthetic_teacher(data: LabeledData, rows, seed: int, acc_low: float = 0.2,
                      acc_high: float = 1.0, noise: str = "uniform") -> SyntheticTeacher:
    """The positive control: a teacher whose label for row x is right with probability
    a(x) = acc_low + (acc_high - acc_low) * rank(mean intensity of x), and otherwise a
    wrong class: drawn uniformly (``noise="uniform"``) or always the same wrong class for
    a given true class (``"permuted"``: a seeded derangement of the classes, systematic
    confusions like a real teacher's). Its stated probabilities are a(x) on the label it
    gives and (1 - a(x)) / (K - 1) on each other class, so its confidence is exactly
    calibrated and its margin a monotone function of a(x). Draws are per row and seed,
    independent of which rows are asked for."""
    if not 0 <= acc_low <= acc_high <= 1:
        raise ValueError(f"need 0 <= acc_low <= acc_high <= 1, got {acc_low}, {acc_high}")
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; choose from {', '.join(NOISE_KINDS)}")
    rows = np.asarray(rows, dtype=np.int64)
    k = data.n_classes
    rng = np.random.default_rng([int(seed), 0xC0DE])
    u = rng.random(len(data))
    shift = rng.integers(1, k, len(data))
    if noise == "permuted":  # one wrong class per true class: a seeded cyclic shift
        shift = np.full(len(data), 1 + int(seed) % (k - 1))
        perm = rng.permutation(k)
        inverse = np.argsort(perm)
    a = acc_low + (acc_high - acc_low) * intensity_rank(data)
    a, u, shift, y = a[rows], u[rows], shift[rows], data.y[rows]
    correct = u < a
    if noise == "permuted":  # y -> perm[(perm^-1[y] + shift) % k]: never y itself
        wrong = perm[(inverse[y] + shift) % k]
    else:
        wrong = (y + shift) % k
    given = np.where(correct, y, wrong)
    probs = np.repeat(((1 - a) / (k - 1))[:, None], k, axis=1)
    probs[np.arange(len(rows)), given] = a
    logits = torch.from_numpy(np.log(np.clip(probs, 1e-8, 1.0)).astype(np.float32))
    return SyntheticTeacher(logits, a, correct)


# ---------------------------------------------------------------- transfer sets


@dataclass(frozen=True)
class TransferSet:
    """L plus pseudo-labelled U as one training set for :func:`distill_loss`."""
    x: torch.Tensor        # [n, C, H, W]
    target: torch.Tensor   # [n, K] probabilities (one-hot on L)
    side: torch.Tensor     # [n, 2]: weight, is_pseudo

    def __len__(self) -> int:
        return len(self.x)


def transfer_set(x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor,
                 target_u: torch.Tensor, weight_u=None, n_classes: int | None = None) -> TransferSet:
    """Stack L (one-hot targets, weight 1) and U (``target_u``: class indices for hard
    labels or [n, K] probabilities for soft ones; ``weight_u`` per example, default 1)."""
    k = n_classes or (target_u.shape[1] if target_u.ndim == 2 else int(max(y_l.max(), target_u.max())) + 1)
    t_u = one_hot(target_u, k) if target_u.ndim == 1 else target_u.float()
    if len(x_u) != len(t_u) or len(x_l) != len(y_l):
        raise ValueError("inputs and targets differ in length")
    w_u = torch.ones(len(x_u)) if weight_u is None else torch.as_tensor(np.asarray(weight_u), dtype=torch.float32)
    if w_u.shape != (len(x_u),) or not torch.isfinite(w_u).all() or (w_u < 0).any():
        raise ValueError("weight_u must be finite, non-negative, one per unlabeled example")
    side = torch.cat([torch.stack([torch.ones(len(x_l)), torch.zeros(len(x_l))], 1),
                      torch.stack([w_u, torch.ones(len(x_u))], 1)])
    return TransferSet(torch.cat([x_l, x_u]), torch.cat([one_hot(y_l, k), t_u]), side)


# ---------------------------------------------------------------- paired runner


def run_paired(seeds: Iterable[int], prepare: Callable[[int], Any],
               arms: Mapping[str, Callable[[Any, int], Mapping[str, float]]],
               rotate: bool = True, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run every arm on every seed and return one row per (seed, arm) with the metrics
    each arm returns plus ``seconds`` (its wall time).

    ``prepare(seed)`` builds what the arms of one seed share (splits, teacher, student
    initialisation seed): every arm of a seed gets the same context, so results pair by
    seed. With ``rotate`` the arm order shifts by one each seed, so no arm always runs
    first (timings are interleaved). Rows come back in (seed, declared arm) order."""
    names = list(arms)
    if not names:
        raise ValueError("run_paired needs at least one arm")
    rows = []
    for i, seed in enumerate(seeds):
        ctx = prepare(seed)
        order = names[i % len(names):] + names[:i % len(names)] if rotate else names
        for arm in order:
            if progress:
                progress(f"seed {seed} {arm}")
            t0 = time.perf_counter()
            metrics = dict(arms[arm](ctx, seed))
            elapsed = time.perf_counter() - t0
            bad = {"seed", "arm"} & set(metrics)
            if bad:
                raise ValueError(f"arm {arm!r} returned reserved names {sorted(bad)}")
            rows.append({"seed": seed, "arm": arm, **metrics, "seconds": metrics.get("seconds", elapsed)})
    table = pd.DataFrame(rows)
    table["_order"] = table["arm"].map({a: j for j, a in enumerate(names)})
    return table.sort_values(["seed", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


def paired_estimate(table: pd.DataFrame, a: str, b: str, metric: str) -> Estimate:
    """Mean and 95 % t-interval of metric(a) - metric(b), paired by seed."""
    va, vb = paired_values(table, "arm", a, b, metric)
    if np.isnan(va).any() or np.isnan(vb).any():
        raise ValueError(f"arms {a!r} and {b!r} are not both present on every seed")
    return paired_diff(va, vb)


def synthetic_topk_teacher(data: LabeledData, rows, seed: int, k: int, acc_low: float = 0.2,
                           acc_high: float = 1.0, noise: str = "permuted") -> SyntheticTeacher:
    """A positive control that follows SLaM's noise model (chapter 05): for row x the
    label given is the true one with probability a(x) (as in :func:`synthetic_teacher`,
    rising with the image's intensity rank), and otherwise one of the k - 1 other classes
    of a confusion set S(x) that always holds the truth. The stated probabilities are
    (1 - a(x)) / k on each class of S(x) plus a(x) on the label given (1e-6 elsewhere):
    the label given is always the argmax (also for a(x) < 1/k), its margin is a(x), and
    the teacher's top-k classes are S(x), which contain the truth on every row.

    ``noise="permuted"`` (systematic): S(x) depends only on the true class (a seeded set
    of k - 1 other classes per class) and a wrong label is always the first of them, so
    hard-label distillation learns the confusions instead of averaging them out;
    ``"uniform"``: S(x) and the wrong label are drawn per row."""
    n_classes = data.n_classes
    if not 2 <= k <= n_classes:
        raise ValueError(f"k must be in [2, {n_classes}], got {k}")
    if not 0 <= acc_low <= acc_high <= 1:
        raise ValueError(f"need 0 <= acc_low <= acc_high <= 1, got {acc_low}, {acc_high}")
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; choose from {', '.join(NOISE_KINDS)}")
    rows = np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 0x70C, k])
    u = rng.random(len(data))
    if noise == "permuted":  # k - 1 distinct shifts per true class, the same for every row
        per_class = np.argsort(rng.random((n_classes, n_classes - 1)), axis=1)[:, :k - 1] + 1
        shifts = per_class[data.y]
        pick = np.zeros(len(data), dtype=np.int64)
    else:  # k - 1 distinct wrong classes per row: a random order of the shifts 1..K-1
        shifts = np.argsort(rng.random((len(data), n_classes - 1)), axis=1)[:, :k - 1] + 1
        pick = rng.integers(0, k - 1, len(data))
    a = acc_low + (acc_high - acc_low) * intensity_rank(data)
    a, u, shifts, pick, y = a[rows], u[rows], shifts[rows], pick[rows], data.y[rows]
    others = (y[:, None] + shifts) % n_classes               # S(x) minus the truth
    correct = u < a
    given = np.where(correct, y, others[np.arange(len(rows)), pick])
    members = np.concatenate([y[:, None], others], axis=1)   # S(x)
    probs = np.full((len(rows), n_classes), 1e-6)
    probs[np.arange(len(rows))[:, None], members] = ((1 - a) / k)[:, None]
    probs[np.arange(len(rows)), given] += a
    probs = np.maximum(probs, 1e-6)  # a(x) = 1 leaves the rest of S(x) at 0: keep logs finite
    probs /= probs.sum(1, keepdims=True)
    logits = torch.from_numpy(np.log(probs).astype(np.float32))
    return SyntheticTeacher(logits, a, correct)
