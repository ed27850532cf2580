"""Learning from a teacher using unlabeled data (Menghani & Ravi, arXiv:1911.05275).

A teacher trained on MNIST labels unlabeled images from other sources with its soft
predictions; a "blind" student learns only from those and is scored on the MNIST test
set. A blind student is then fine-tuned on k labels per class and compared with the
same student trained from scratch on the same labels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..claims import Claim, Rule
from ..config import ChapterConfig, require
from ..runtime import Runtime, set_seed
from ..stats import paired_values
from ..toolkits.distill import kd_loss
from ..training import accuracy, predict_logits, train

ARXIV = "1911.05275"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: transfer-set sources: the real out-of-distribution ones, two structure-free
#: controls, and unlabeled MNIST itself as the in-distribution upper bound.
OOD_SOURCES = ("fashion", "notmnist", "cifar_patches")
STRUCTURE_FREE = ("noise", "shuffled_mnist")
UPPER_BOUND = "mnist"
SOURCES = OOD_SOURCES + STRUCTURE_FREE + (UPPER_BOUND,)
CONTROL = "random_teacher"  # a random-init teacher over unlabeled MNIST


# ---------------------------------------------------------------- models

class Normalize(nn.Module):
    def forward(self, x):
        return (x - MNIST_MEAN) / MNIST_STD


def teacher_cnn() -> nn.Module:
    """Two 3x3 conv blocks and two linear layers (about 105k parameters)."""
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


def student_mlp(hidden: int = 128) -> nn.Module:
    """A smaller student: one hidden layer."""
    return nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- data

@dataclass
class MnistSplits:
    """MNIST split once: a validation set held out of train (for T and source choice),
    the remaining pool (teacher training, unlabeled transfer, k-shot labels), and test."""
    pool_x: np.ndarray
    pool_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def mnist_splits(val_size: int, split_seed: int = 12345) -> MnistSplits:
    x, y = data.load_image_set("mnist", "train")
    tx, ty = data.load_image_set("mnist", "test")
    perm = np.random.default_rng(split_seed).permutation(len(x))
    val, pool = perm[:val_size], perm[val_size:]
    # The loader's arrays are read-only (cached once per process); the splits own
    # writable copies, so torch.from_numpy on any of them neither warns nor aliases the cache.
    return MnistSplits(x[pool], y[pool], x[val], y[val], tx.copy(), ty.copy())


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [n,28,28] -> float [n,1,28,28] in [0,1] (MNIST's range and polarity)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected uint8 [n,28,28] images, got {images.dtype} {images.shape}")
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def _sample(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    # Without replacement while the pool lasts: notMNIST has only 10,000 images offline.
    return pool[rng.choice(len(pool), size=n, replace=n > len(pool))]


def transfer_set(source: str, n: int, rng: np.random.Generator,
                 mnist_pool: np.ndarray) -> np.ndarray:
    """``n`` unlabeled 28x28 uint8 images from ``source`` (white-on-black like MNIST)."""
    if n <= 0:
        raise ValueError(f"transfer set size must be positive, got {n}")
    if source == "fashion":
        return _sample(data.load_image_set("fashion", "train")[0], n, rng)
    if source == "notmnist":
        return _sample(data.load_image_set("notmnist", "test")[0], n, rng)
    if source == "cifar_patches":
        gray = data.cifar10_gray("train")
        idx = rng.integers(0, len(gray), n)
        r, c = rng.integers(0, 5, n), rng.integers(0, 5, n)
        return np.stack([gray[i, a:a + 28, b:b + 28] for i, a, b in zip(idx, r, c)])
    if source == "noise":
        return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    if source == "shuffled_mnist":
        flat = _sample(mnist_pool, n, rng).reshape(n, -1)
        return rng.permuted(flat, axis=1).reshape(n, 28, 28)
    if source == "mnist":
        return _sample(mnist_pool, n, rng)
    raise ValueError(f"unknown transfer source {source!r}; choose from {', '.join(SOURCES)}")


def balance_by_teacher(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """Indices that resample a transfer set so each teacher-argmax class is equally likely."""
    pred = logits.argmax(1).numpy()
    counts = np.bincount(pred, minlength=logits.shape[1])
    weights = 1.0 / counts[pred]
    return rng.choice(len(pred), size=len(pred), replace=True, p=weights / weights.sum())


def argmax_histogram(logits: torch.Tensor, n_classes: int = 10) -> np.ndarray:
    """Fraction of a transfer set that the teacher assigns to each class."""
    counts = np.bincount(logits.argmax(1).numpy(), minlength=n_classes)
    return counts / counts.sum()


def k_shot(y: np.ndarray, k: int, rng: np.random.Generator, n_classes: int = 10) -> np.ndarray:
    """Indices of ``k`` examples of each class, drawn without replacement."""
    picks = []
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} examples, fewer than k={k}")
        picks.append(rng.choice(members, size=k, replace=False))
    return np.concatenate(picks)


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class Config(ChapterConfig):
    seeds: int
    val_size: int
    teacher_train: int
    teacher_steps: int
    transfer_size: int
    student_steps: int
    student_hidden: int
    temperatures: tuple[float, ...]
    k_shots: tuple[int, ...]
    finetune_steps: int
    batch_size: int = 128
    lr: float = 1e-3
    sources: tuple[str, ...] = SOURCES
    balance_classes: bool = False
    threads: int = 1

    @classmethod
    def profiles(cls):
        smoke = cls(seeds=2, val_size=1000, teacher_train=4000, teacher_steps=100,
                    transfer_size=1000, student_steps=80, student_hidden=64,
                    temperatures=(1.0, 4.0), k_shots=(1, 10), finetune_steps=40)
        cpu = cls(seeds=3, val_size=5000, teacher_train=20000, teacher_steps=800,
                  transfer_size=10000, student_steps=700, student_hidden=128,
                  temperatures=(1.0, 2.0, 4.0, 8.0), k_shots=(1, 5, 10, 100),
                  finetune_steps=200, threads=2)
        gpu = dataclasses.replace(cpu, seeds=5, teacher_train=55000, teacher_steps=6000,
                                  transfer_size=55000, student_steps=6000,
                                  student_hidden=256, finetune_steps=500)
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}

    def validate(self):
        require(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
        require(1000 <= self.val_size <= 20000, f"val_size must be in [1000, 20000], got {self.val_size}")
        require(100 <= self.teacher_train <= 60000 - self.val_size,
                f"teacher_train must be in [100, {60000 - self.val_size}], got {self.teacher_train}")
        for name in ("teacher_steps", "transfer_size", "student_steps", "student_hidden",
                     "finetune_steps", "batch_size", "threads"):
            require(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        require(self.temperatures and all(0 < t < 1000 for t in self.temperatures),
                f"temperatures must lie in (0, 1000), got {self.temperatures}")
        require(0 < self.lr < 1, f"lr must lie in (0, 1), got {self.lr}")
        require(all(1 <= k <= 500 for k in self.k_shots) and self.k_shots,
                f"k_shots must be in [1, 500], got {self.k_shots}")
        unknown = set(self.sources) - set(SOURCES)
        require(not unknown, f"unknown sources {sorted(unknown)}; choose from {', '.join(SOURCES)}")
        require(UPPER_BOUND in self.sources and set(OOD_SOURCES) & set(self.sources),
                f"sources must include '{UPPER_BOUND}' (the control uses it) and at least one "
                f"of {OOD_SOURCES}")


# ---------------------------------------------------------------- experiment pieces

def train_teacher(splits: MnistSplits, cfg: Config, rt: Runtime) -> nn.Module:
    set_seed(rt.seed)
    model = teacher_cnn()
    x = to_tensor(splits.pool_x[:cfg.teacher_train])
    y = torch.from_numpy(splits.pool_y[:cfg.teacher_train])
    train(model, x, y, F.cross_entropy, steps=cfg.teacher_steps, batch_size=cfg.batch_size,
          lr=cfg.lr, rt=rt, desc="teacher")
    return model


def random_teacher(seed: int) -> nn.Module:
    set_seed(seed)
    return teacher_cnn().eval()


@dataclass
class TransferSet:
    source: str
    x: torch.Tensor
    teacher_logits: torch.Tensor


def build_transfer(source: str, teacher: nn.Module, splits: MnistSplits, cfg: Config,
                   seed: int, rt: Runtime) -> TransferSet:
    """Draw the set for ``seed`` and label it once with the teacher's logits."""
    rng = np.random.default_rng([seed, SOURCES.index(source) if source in SOURCES else 99])
    x = to_tensor(transfer_set(source, cfg.transfer_size, rng, splits.pool_x))
    logits = predict_logits(teacher, x, rt)
    if cfg.balance_classes:
        keep = torch.from_numpy(balance_by_teacher(logits, rng))
        x, logits = x[keep], logits[keep]
    return TransferSet(source, x, logits)


def blind_student(ts: TransferSet, temperature: float, cfg: Config, seed: int,
                  rt: Runtime) -> nn.Module:
    """A student trained only on the teacher's soft labels over the transfer set.
    The same ``seed`` gives every arm the same initialisation and batch order."""
    set_seed(seed)
    student = student_mlp(cfg.student_hidden)
    train(student, ts.x, ts.teacher_logits, partial(kd_loss, temperature=temperature),
          steps=cfg.student_steps, batch_size=cfg.batch_size, lr=cfg.lr,
          rt=dataclasses.replace(rt, seed=seed), desc=f"blind {ts.source} T={temperature:g}")
    return student


def finetune(student: nn.Module | None, x: torch.Tensor, y: torch.Tensor, cfg: Config,
             seed: int, rt: Runtime) -> nn.Module:
    """Cross-entropy on the labeled examples, from ``student`` or (None) from scratch
    with the same initialisation the blind student started from."""
    set_seed(seed)
    model = student_mlp(cfg.student_hidden)
    if student is not None:
        model.load_state_dict(student.state_dict())
    train(model, x, y, F.cross_entropy, steps=cfg.finetune_steps,
          batch_size=min(64, len(x)), lr=cfg.lr, rt=dataclasses.replace(rt, seed=seed),
          desc="finetune" if student is not None else "scratch")
    return model


def choose_temperatures(teacher: nn.Module, control: nn.Module, splits: MnistSplits,
                        cfg: Config, rt: Runtime, seed: int = 10_000) -> pd.DataFrame:
    """Validation accuracy of a blind student per (arm, temperature) on a selection seed
    that no reported run uses; the test split is never looked at."""
    val_x, val_y = to_tensor(splits.val_x), torch.from_numpy(splits.val_y)
    rows = []
    for arm, src, tch in _arms(cfg, teacher, control):
        ts = build_transfer(src, tch, splits, cfg, seed, rt)
        for t in cfg.temperatures:
            acc = accuracy(blind_student(ts, t, cfg, seed, rt), val_x, val_y, rt)
            rows.append({"arm": arm, "temperature": t, "val_acc": acc})
    return pd.DataFrame(rows)


def _arms(cfg: Config, teacher: nn.Module, control: nn.Module):
    for src in cfg.sources:
        yield src, src, teacher
    yield CONTROL, UPPER_BOUND, control


def best_by_validation(selection: pd.DataFrame) -> dict[str, float]:
    best = selection.loc[selection.groupby("arm")["val_acc"].idxmax()]
    return dict(zip(best["arm"], best["temperature"].astype(float)))


def run_blind(teacher: nn.Module, control: nn.Module, splits: MnistSplits, cfg: Config,
              temps: dict[str, float], rt: Runtime):
    """Every arm for every seed: (tidy accuracy table, blind students, teacher histograms)."""
    test_x, test_y = to_tensor(splits.test_x), torch.from_numpy(splits.test_y)
    rows, students, hists = [], {}, {}
    for seed in range(cfg.seeds):
        for arm, src, tch in _arms(cfg, teacher, control):
            ts = build_transfer(src, tch, splits, cfg, seed, rt)
            if seed == 0:
                hists[arm] = argmax_histogram(ts.teacher_logits)
            student = blind_student(ts, temps[arm], cfg, seed, rt)
            students[arm, seed] = student
            rows.append({"seed": seed, "arm": arm, "temperature": temps[arm],
                         "test_acc": accuracy(student, test_x, test_y, rt)})
    hist = pd.DataFrame(hists).T
    hist.columns = [str(c) for c in hist.columns]
    return pd.DataFrame(rows), students, hist


def run_finetune(students: dict, arm: str, splits: MnistSplits, cfg: Config,
                 rt: Runtime) -> pd.DataFrame:
    """k-shot fine-tuning from the blind student of ``arm`` vs from scratch, paired by
    seed (same labeled subset, same initialisation, same steps)."""
    test_x, test_y = to_tensor(splits.test_x), torch.from_numpy(splits.test_y)
    rows = []
    for seed in range(cfg.seeds):
        for k in cfg.k_shots:
            idx = k_shot(splits.pool_y, k, np.random.default_rng([seed, k, 7]))
            x, y = to_tensor(splits.pool_x[idx]), torch.from_numpy(splits.pool_y[idx])
            for start, model in (("blind", students[arm, seed]), ("scratch", None)):
                tuned = finetune(model, x, y, cfg, seed, rt)
                rows.append({"seed": seed, "k": k, "start": start,
                             "test_acc": accuracy(tuned, test_x, test_y, rt)})
    return pd.DataFrame(rows)


def validation_at_chosen(selection: pd.DataFrame, temps: dict[str, float]) -> pd.Series:
    """Each arm's validation accuracy at its chosen temperature."""
    chosen = selection[selection["temperature"] == selection["arm"].map(temps)]
    return chosen.set_index("arm")["val_acc"]


def best_by_val(val: pd.Series, candidates) -> str | None:
    """The candidate arm with the best validation accuracy (None if none was run)."""
    present = [c for c in candidates if c in val.index]
    return val[present].idxmax() if present else None


def blind_vs(blind: pd.DataFrame, a: str, b: str):
    """Test accuracies of blind arms ``a`` and ``b``, paired by seed."""
    return paired_values(blind, "arm", a, b, "test_acc")


def finetune_advantage(tuned: pd.DataFrame, k: int) -> np.ndarray:
    """Per seed: accuracy of the fine-tuned blind student minus scratch, at ``k``."""
    blind, scratch = paired_values(tuned[tuned.k == k], "start", "blind", "scratch", "test_acc")
    return blind - scratch


# ---------------------------------------------------------------- claims (fixed before running)

_ABSTRACT = "abstract (qualitative)"

CLAIMS = {
    **{f"beats-control-{src}": Claim(
        f"beats-control-{src}",
        f"A blind student distilled through {src} (out-of-distribution, unlabeled) beats one "
        f"distilled from a random-init teacher: the teacher transfers knowledge through OOD data.",
        "test accuracy difference (source - random-teacher control), paired by seed",
        Rule(0.0), paper_value="not available offline", paper_source=_ABSTRACT)
       for src in OOD_SOURCES},
    "structured-beats-unstructured": Claim(
        "structured-beats-unstructured",
        "The best natural OOD source transfers more than the best structure-free input "
        "(uniform noise, pixel-shuffled MNIST); Kulkarni et al. (2017) found stimulus "
        "complexity a key factor. The paper's own ranking is not available offline.",
        "test accuracy difference (best OOD source by validation - best structure-free "
        "source by validation), paired by seed",
        Rule(0.0), paper_value="not available offline", paper_source=_ABSTRACT),
    "finetune-beats-scratch-k1": Claim(
        "finetune-beats-scratch-k1",
        "With one label per class, fine-tuning the blind student beats training the same "
        "student from scratch.",
        "test accuracy difference (fine-tuned blind - scratch) at k=1, paired by seed",
        Rule(0.0), paper_value="not available offline", paper_source=_ABSTRACT),
    "advantage-shrinks": Claim(
        "advantage-shrinks",
        "The advantage of the blind start shrinks as labels grow (from the smallest to the "
        "largest k tested).",
        "difference of paired advantages (k_min - k_max), paired by seed",
        Rule(0.0), paper_value="not available offline", paper_source=_ABSTRACT),
}
