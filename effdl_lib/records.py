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

from .claims import Claim, ClaimCheck
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
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "effdl_lib", "cython_ext",
                                "notebooks/*.py"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(threads: int | None = None) -> dict[str, Any]:
    import torch
    from . import __version__
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "effdl_lib": __version__, "git_commit": _git_commit(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "threads": threads or torch.get_num_threads(),
            "gpu": gpu, "load_avg_start": list(os.getloadavg()), "platform": platform.platform()}


def claims_digest(claims: list[dict]) -> str:
    blob = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def record_dir() -> Path:
    # Runs outside the pipeline never touch the committed records in notebooks/.
    return env_path("EFFDL_RECORD_DIR", "build/records")


class Record:
    """Collects a chapter's parameters, environment and claim checks; writes the JSON."""

    def __init__(self, slug: str, chapter: str, arxiv: str, profile: str,
                 parameters: dict[str, Any], threads: int | None = None):
        self.slug, self.chapter, self.arxiv = slug, chapter, arxiv
        self.profile, self.parameters = profile, parameters
        self.run_id = uuid.uuid4().hex[:12]
        self.start = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()
        self.env = environment(threads)
        self.checks: list[ClaimCheck] = []
        self.extra: dict[str, Any] = {}

    def check(self, claim: Claim, measured: Estimate | None, note: str = "") -> ClaimCheck:
        if any(c.claim.id == claim.id for c in self.checks):
            raise ValueError(f"claim {claim.id!r} checked twice")
        result = ClaimCheck(claim, measured, note=note)
        self.checks.append(result)
        return result

    def claims(self) -> list[dict]:
        return [c.as_dict() for c in self.checks]

    def table(self):
        import pandas as pd
        rows = [{"id": c["id"], "claim": c["claim"], "paper": format_paper(c),
                 "metric": c["metric"], "ours: mean [95% CI] (n)": format_measured(c["measured"]),
                 "rule": c["rule"], "verdict": c["verdict"]} for c in self.claims()]
        return pd.DataFrame(rows).set_index("id")

    def write(self) -> Path:
        end = datetime.now(timezone.utc)
        claims = self.claims()
        payload = {"chapter": self.chapter, "slug": self.slug, "arxiv": self.arxiv,
                   "profile": self.profile, "parameters": self.parameters,
                   "run_id": self.run_id, "start": self.start.isoformat(timespec="seconds"),
                   "end": end.isoformat(timespec="seconds"),
                   "duration_s": round(time.perf_counter() - self._t0, 1),
                   "environment": self.env, "claims": claims,
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


# ---------------------------------------------------------------- the book page

def format_measured(m: dict | None) -> str:
    """'mean [low, high] (n)' of a claim's measurement, as the table and the page show it."""
    if m is None:
        return "-"
    if m["n"] < 2:
        return f"{m['mean']:.3g} (1)"
    return f"{m['mean']:.3g} [{m['ci_low']:.3g}, {m['ci_high']:.3g}] ({m['n']})"


def format_paper(c: dict) -> str:
    return c["paper_value"] + ("" if c["paper_source"] == "not available" else f" ({c['paper_source']})")


def load_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.record.json"))]


def record_page(records: list[dict]) -> str:
    """Markdown for book/record.md: every claim, environment, seeds and run times."""
    lines = ["# Reproduction record", "",
             "Generated by `make book` from the record JSONs that each executed chapter "
             "writes beside its notebook (`notebooks/NN_slug.record.json`). Do not edit by "
             "hand. Measured values are means with 95% intervals: Student-t over paired seeds for "
             "differences, percentile bootstrap over paired repeats for ratios (timings).", ""]
    if not records:
        return "\n".join(lines + ["No chapter has been executed yet."]) + "\n"
    lines += ["## Every claim", "",
              "| chapter | claim | paper | ours: mean [95% CI] (n) | verdict |",
              "|---|---|---|---|---|"]
    for rec in records:
        for c in rec["claims"]:
            text = c["claim"].replace("|", "\\|")
            lines.append(f"| {rec['slug']} | **{c['id']}**: {text} | {format_paper(c)} | "
                         f"{format_measured(c['measured'])} | {c['verdict']} |")
    lines += ["", "## Runs", "",
              "| chapter | arXiv | profile | seeds | start (UTC) | duration (s) | threads | "
              "CPU | GPU | torch | commit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rec in records:
        env, par = rec["environment"], rec["parameters"]
        lines.append(f"| {rec['slug']} | {rec['arxiv']} | {rec['profile']} | "
                     f"{par.get('seeds', '-')} | {rec['start']} | {rec['duration_s']} | "
                     f"{env['threads']} | {env['cpu']} | {env['gpu'] or '-'} | {env['torch']} | "
                     f"`{env['git_commit'][:12]}` |")
    lines += ["", "## Parameters", ""]
    for rec in records:
        params = ", ".join(f"`{k}={v}`" for k, v in rec["parameters"].items())
        lines += [f"- **{rec['slug']}** ({rec['profile']}): {params}"]
    return "\n".join(lines) + "\n"
