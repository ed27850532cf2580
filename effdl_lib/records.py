"""The reproduction record: one JSON per executed chapter, and the book page built from them."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .claims import ClaimCheck, Measurement, match_measurements
from .data import REPO_ROOT, env_path
from .stats import Estimate


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    """HEAD at run time; what the record depends on is pinned by its input hashes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return sha or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(threads: int | None = None, device: str | None = None) -> dict[str, Any]:
    import torch
    from . import __version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "effdl_lib": __version__, "git_commit": _git_commit(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "device": device or "cpu", "gpu": gpu, "load_avg_start": list(os.getloadavg()),
            "platform": platform.platform()}


def claims_digest(claims: list[dict]) -> str:
    blob = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def record_dir() -> Path:
    # Runs outside the pipeline never touch the committed records in notebooks/.
    return env_path("EFFDL_RECORD_DIR", "build/records")


class Record:
    """Collects a chapter's parameters, environment, input hashes and claim checks, and
    writes the JSON. Made by :func:`effdl_lib.chapter.start`; ``module`` is the chapter
    module (its ``SLUG``, ``TITLE``, ``ARXIV`` and ``CLAIMS``)."""

    def __init__(self, module, profile: str, parameters: dict[str, Any],
                 threads: int | None = None, device: str | None = None):
        self.module = module
        self.slug, self.chapter, self.arxiv = module.SLUG, module.TITLE, f"arXiv:{module.ARXIV}"
        self.profile, self.parameters = profile, parameters
        self.run_id = uuid.uuid4().hex[:12]
        self.start = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()
        self.env = environment(threads, device)
        self.source = REPO_ROOT / "notebooks" / f"{self.slug}.py"
        self.checks: list[ClaimCheck] = []
        self.extra: dict[str, Any] = {}

    def check_all(self, measured: dict[str, Measurement]) -> list[ClaimCheck]:
        """Decide every claim of the chapter from ``measure(...)``'s output: each CLAIMS
        id exactly once, no other id."""
        if self.checks:
            raise ValueError("check_all was already called for this record")
        for claim, m in match_measurements(self.module.CLAIMS, measured):
            self.checks.append(ClaimCheck(claim, m.estimate, note=m.note))
        return self.checks

    def claims(self) -> list[dict]:
        return [c.as_dict() for c in self.checks]

    def table(self):
        """The claim table the chapter shows: origin, paper value, ours, rule, verdict."""
        import pandas as pd
        from .book import format_measured, format_origin, format_paper_value
        rows = [{"id": c["id"], "claim": c["claim"], "origin": format_origin(c),
                 "paper": format_paper_value(c), "metric": c["metric"],
                 "ours: mean [95% CI] (n)": format_measured(c["measured"]),
                 "rule": c["rule"], "verdict": c["verdict"]} for c in self.claims()]
        return pd.DataFrame(rows).set_index("id")

    def write(self) -> Path:
        from . import data
        from .provenance import chapter_inputs
        if not self.checks:
            raise ValueError("no claim was checked: call record.check_all(module.measure(...))")
        end = datetime.now(timezone.utc)
        claims = self.claims()
        hashes = chapter_inputs(self.source, self.parameters, data.files_read())
        payload = {"chapter": self.chapter, "slug": self.slug, "arxiv": self.arxiv,
                   "profile": self.profile, "parameters": self.parameters,
                   "run_id": self.run_id, "start": self.start.isoformat(timespec="seconds"),
                   "end": end.isoformat(timespec="seconds"),
                   "duration_s": round(time.perf_counter() - self._t0, 1),
                   "environment": {**self.env, "load_avg_end": list(os.getloadavg())},
                   **hashes, "claims": claims,
                   "claims_digest": claims_digest(claims), **self.extra}
        out = record_dir() / f"{self.slug}.record.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")
        print(f"record {out.name}: run {self.run_id}, profile {self.profile}, "
              f"{payload['duration_s']} s, claims digest {payload['claims_digest']}")
        return out


def _plain(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a record")


def glue(name: str, value: Any) -> None:
    """Glue a value for the chapter's prose; floats as plain Python floats (NumPy 2's
    repr ``np.float64(0.5)`` breaks the book's format specs)."""
    from myst_nb import glue as _glue
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool):
        value = int(value)
    _glue(name, value, display=False)


# The book's pages (record page, overview) live in effdl_lib.book; these names stay here
# for callers of the first version.
from .book import format_measured, load_records, record_page  # noqa: E402,F401
