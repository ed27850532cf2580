"""One call that starts a chapter notebook, and the checks every chapter module passes.

A notebook does::

    from effdl_lib.chapter import start
    from effdl_lib.chapters import ood_distillation as ood
    _names_before = set(globals())
    # parameters cell: profile = "cpu", then every Config field = None
    cfg, rt, record = start(ood, profile, globals(), _names_before)
    ...
    record.check_all(ood.measure(results))
    record.table()
    ...
    record.write()

A chapter module provides ``SLUG``, ``TITLE``, ``ARXIV``, a ``Config`` (a frozen
:class:`~effdl_lib.config.ChapterConfig` with ``smoke``/``cpu``/``gpu`` profiles),
``CLAIMS`` (:func:`~effdl_lib.claims.claims_catalog`) and ``measure(results)``.
"""
from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, Mapping, NamedTuple

from . import runtime
from .config import ChapterConfig, notebook_parameters
from .records import Record
from .runtime import Runtime

REQUIRED = ("SLUG", "TITLE", "ARXIV", "Config", "CLAIMS", "measure")


class Chapter(NamedTuple):
    cfg: ChapterConfig
    rt: Runtime
    record: Record


def start(module: ModuleType, profile: str, namespace: Mapping[str, Any],
          names_before: set[str], seed: int = 0) -> Chapter:
    """Resolve the config from the profile and the notebook's parameters (a misspelt or
    invalid one fails with the valid choices), seed everything, fix the thread count and
    the device, open the record, print what was chosen and return (cfg, rt, record)."""
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise TypeError(f"{module.__name__} is not a chapter module: it lacks {missing}")
    cfg = module.Config.resolve(profile, notebook_parameters(namespace, names_before))
    rt = runtime.setup(seed=seed, threads=cfg.threads, device=cfg.device)
    record = Record(module, profile, cfg.asdict(), threads=rt.threads, device=str(rt.device))
    changed = {k: v for k, v in cfg.asdict().items()
               if v != module.Config.resolve(profile).asdict()[k]}
    print(f"{module.SLUG}: profile={profile}, device={rt.device}, torch threads={rt.threads}"
          + (f", changed from the profile: {changed}" if changed else ""))
    return Chapter(cfg, rt, record)


def parameters_cell(module: ModuleType) -> str:
    """The text of a chapter's papermill parameters cell: ``profile`` and every Config
    field, None meaning "the profile's value", with its type and range as a comment."""
    lines = ['profile = "cpu"  # smoke | cpu | gpu']
    for name, text in module.Config.describe().items():
        lines.append(f"{name} = None  # {text}")
    return "\n".join(lines)


def check_chapter(module: ModuleType) -> list[str]:
    """Problems with a chapter module as a whole (empty when it is sound): every
    profile resolves, smoke is no larger than cpu, claim ids are unique and keyed by
    their own id, every claim has an origin."""
    problems = [f"lacks {name}" for name in REQUIRED if not hasattr(module, name)]
    if problems:
        return problems
    profiles = module.Config.profiles()
    for name in ("smoke", "cpu", "gpu"):
        if name not in profiles:
            problems.append(f"no {name!r} profile")
            continue
        try:
            module.Config.resolve(name)
        except Exception as exc:  # noqa: BLE001  (report every failure, not the first)
            problems.append(f"profile {name!r} does not resolve: {exc}")
    if not problems:
        smoke, cpu = module.Config.resolve("smoke"), module.Config.resolve("cpu")
        # Integer fields are sizes (seeds, steps, set sizes) unless the Config names them
        # in NOT_SIZES (a seed offset, a bit width...).
        exempt = {"threads", *getattr(module.Config, "NOT_SIZES", ())}
        for f in dataclasses.fields(smoke):
            a, b = getattr(smoke, f.name), getattr(cpu, f.name)
            if type(a) is int and type(b) is int and f.name not in exempt and a > b:
                problems.append(f"smoke's {f.name}={a} is larger than cpu's {b}")
    for key, claim in module.CLAIMS.items():
        if key != claim.id:
            problems.append(f"CLAIMS key {key!r} holds claim {claim.id!r}")
    return problems
