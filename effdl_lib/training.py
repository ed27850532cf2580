"""A minimal training loop on in-memory tensors, counted in gradient steps (not epochs) so
arms with transfer sets of different sizes get the same optimisation budget."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from .runtime import Runtime

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batches(n: int, batch_size: int, steps: int, gen: torch.Generator, device=None):
    """Yield ``steps`` index batches, reshuffling after each pass over ``n`` items.
    The permutation is drawn on the CPU generator (the same order on every device) and
    moved to ``device`` once per pass, not once per batch."""
    if n <= 0:
        raise ValueError("cannot draw batches from an empty set")
    batch_size = min(batch_size, n)
    perm, pos = torch.randperm(n, generator=gen).to(device), 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen).to(device), 0
        yield perm[pos:pos + batch_size]
        pos += batch_size


def train(model: nn.Module, x: torch.Tensor, target: torch.Tensor, loss_fn: LossFn, *,
          steps: int, batch_size: int, lr: float, rt: Runtime, seed_offset: int = 0,
          desc: str = "train", weight_decay: float = 0.0,
          weights: torch.Tensor | None = None,
          callback: Callable[[int, nn.Module], None] | None = None) -> list[float]:
    """Adam with a cosine learning-rate decay over ``steps``; returns the loss curve.

    ``weights``: optional per-example tensor aligned with ``x`` (example weights, or any
    per-example side information such as [weight, is_pseudo] rows); when given, each
    batch's slice is passed as a third argument, ``loss_fn(output, target, weights)``.
    ``callback(step, model)`` runs after each optimiser step (steps count from 1), for
    curves such as accuracy against steps; it may evaluate the model (put it back in
    train mode after). The data moves to the device once, not per batch, and the loss
    stays on the device until the end (no host sync per step)."""
    if weights is not None and len(weights) != len(x):
        raise ValueError(f"weights has {len(weights)} rows for {len(x)} examples")
    x, target = x.to(rt.device), target.to(rt.device)
    weights = None if weights is None else weights.to(rt.device)
    model.to(rt.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    gen = rt.generator(seed_offset)
    losses = []
    bar = tqdm(batches(len(x), batch_size, steps, gen, x.device), total=steps, desc=desc,
               disable=rt.quiet, leave=False, mininterval=1.0)
    for idx in bar:
        xb, tb = x[idx], target[idx]
        if weights is None:
            loss = loss_fn(model(xb), tb)
        else:
            loss = loss_fn(model(xb), tb, weights[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())
        if callback is not None:
            callback(len(losses), model)
    model.eval()
    return torch.stack(losses).tolist() if losses else []


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, rt: Runtime,
                   batch_size: int = 2048) -> torch.Tensor:
    model.to(rt.device).eval()
    return torch.cat([model(x[i:i + batch_size].to(rt.device)).float().cpu()
                      for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rt: Runtime) -> float:
    return float((predict_logits(model, x, rt).argmax(1) == y).float().mean())
