"""Claims with verdict rules fixed before the run, and their checks against measurements.

A chapter module declares ``CLAIMS = claims_catalog(Claim(...), ...)``, each claim with
its origin (:func:`paper`, :func:`related` or :func:`ours`), and a function
``measure(results) -> {claim id: Measurement}``; the notebook's
``record.check_all(module.measure(results))`` decides every verdict from the rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .stats import Estimate

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable at this scale"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)
NOT_AVAILABLE = "not available"


# ---------------------------------------------------------------- where a claim comes from

ORIGIN_KINDS = {"paper": "the paper", "related": "related work",
                "ours": "this companion's hypothesis"}


@dataclass(frozen=True)
class Origin:
    """Where a claim comes from: ``paper`` (with section, table or figure when known),
    ``related`` work (with the citation), or ``ours`` (this companion's own hypothesis)."""
    kind: str
    where: str = ""

    def __post_init__(self):
        if self.kind not in ORIGIN_KINDS:
            raise ValueError(f"origin kind must be one of {', '.join(ORIGIN_KINDS)}, "
                             f"not {self.kind!r}")
        if self.kind != "ours" and not self.where:
            raise ValueError(f"an origin of kind {self.kind!r} must say where "
                             f"(section, table, figure or citation)")

    @property
    def text(self) -> str:
        return ORIGIN_KINDS[self.kind] + (f": {self.where}" if self.where else "")

    def as_dict(self) -> dict:
        return {"kind": self.kind, "where": self.where}


def paper(where: str) -> Origin:
    """The paper itself, e.g. ``paper("Table 2")`` or ``paper("abstract")``."""
    return Origin("paper", where)


def related(where: str) -> Origin:
    """Related work the paper builds on or answers, e.g. ``related("Kulkarni et al. 2017")``."""
    return Origin("related", where)


def ours(why: str = "") -> Origin:
    """A hypothesis of this companion, not stated by the paper."""
    return Origin("ours", why)


# ---------------------------------------------------------------- verdict rules

@dataclass(frozen=True)
class Rule:
    """Compares an estimate with a threshold: reproduced when the whole 95 % CI is on the
    claimed side, partly when only the mean is, not reproduced otherwise. With fewer than
    ``min_n`` paired seeds nothing is decided: the claim is not testable at this scale.

    ``margin`` > 0 is the smallest effect that counts (for timings on a shared machine:
    what the same code measured twice can differ by). The mean must then clear
    ``threshold + margin`` (above; ``threshold - margin`` below) for reproduced or partly,
    and the CI must still clear the threshold itself for reproduced, so an effect that
    sits on the threshold is "not reproduced" in every run instead of flipping between
    partly and not with the noise."""
    threshold: float = 0.0
    direction: str = "above"  # or "below"
    min_n: int = 2
    margin: float = 0.0

    def __post_init__(self):
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below', not {self.direction!r}")
        if not self.margin >= 0:
            raise ValueError(f"margin must be >= 0 (the smallest effect that counts), "
                             f"got {self.margin!r}")

    @property
    def bar(self) -> float:
        """What the mean must clear: the threshold moved by the margin, away from it."""
        return (self.threshold + self.margin if self.direction == "above"
                else self.threshold - self.margin)

    @property
    def text(self) -> str:
        side = ">" if self.direction == "above" else "<"
        if not self.margin:
            return (f"reproduced if the 95% CI lies {self.direction} {self.threshold:g}; partly "
                    f"if only the mean is {side} {self.threshold:g}; needs n >= {self.min_n}")
        return (f"reproduced if the 95% CI lies {self.direction} {self.threshold:g} and the "
                f"mean is {side} {self.bar:g} (the smallest effect that counts: "
                f"{self.margin:g}); partly if only the mean is {side} {self.bar:g}; "
                f"needs n >= {self.min_n}")

    def as_dict(self) -> dict:
        d = {"kind": "rule", "threshold": float(self.threshold),
             "direction": self.direction, "min_n": int(self.min_n)}
        if self.margin:  # records written before margins existed stay byte-identical
            d["margin"] = float(self.margin)
        return d

    def decide(self, est: Estimate | None) -> str:
        if est is None or est.n < self.min_n:
            return NOT_TESTABLE
        if self.direction == "above":
            if est.ci_low > self.threshold and (not self.margin or est.mean > self.bar):
                return REPRODUCED
            return PARTLY if est.mean > self.bar else NOT_REPRODUCED
        if est.ci_high < self.threshold and (not self.margin or est.mean < self.bar):
            return REPRODUCED
        return PARTLY if est.mean < self.bar else NOT_REPRODUCED


@dataclass(frozen=True)
class Untestable:
    """A claim this companion states but cannot test (missing data, scale, numbers)."""
    reason: str

    @property
    def text(self) -> str:
        return f"not testable: {self.reason}"

    def as_dict(self) -> dict:
        return {"kind": "untestable", "reason": self.reason}

    def decide(self, est: Estimate | None) -> str:
        return NOT_TESTABLE


def rule_from_dict(d: dict) -> Rule | Untestable:
    """The inverse of ``as_dict``, to re-decide a stored verdict."""
    if d["kind"] == "rule":
        return Rule(d["threshold"], d["direction"], d["min_n"], d.get("margin", 0.0))
    if d["kind"] == "untestable":
        return Untestable(d["reason"])
    raise ValueError(f"unknown rule kind {d['kind']!r}")


# ---------------------------------------------------------------- claims and checks

@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    metric: str
    rule: Rule | Untestable
    origin: Origin
    paper_value: str | None = None  # None: the paper gives no number we could read

    def __post_init__(self):
        if not isinstance(self.origin, Origin):
            raise TypeError(f"claim {self.id!r}: origin must be paper(...), related(...) or "
                            f"ours(...), not {self.origin!r}")


def claims_catalog(*claims: Claim) -> dict[str, Claim]:
    """``{id: claim}`` in declaration order; a repeated id is an error."""
    table: dict[str, Claim] = {}
    for c in claims:
        if c.id in table:
            raise ValueError(f"claim id {c.id!r} declared twice")
        table[c.id] = c
    return table


@dataclass(frozen=True)
class Measurement:
    """What ``measure`` returns per claim: the estimate (None if this run could not
    measure it) and a note for the reader."""
    estimate: Estimate | None
    note: str = ""


@dataclass
class ClaimCheck:
    claim: Claim
    measured: Estimate | None
    verdict: str = field(init=False)
    note: str = ""

    def __post_init__(self):
        self.verdict = self.claim.rule.decide(self.measured)
        assert self.verdict in VERDICTS

    def as_dict(self) -> dict:
        c = self.claim
        return {"id": c.id, "claim": c.claim, "origin": c.origin.as_dict(),
                "paper_value": c.paper_value, "metric": c.metric, "rule": c.rule.text,
                "rule_spec": c.rule.as_dict(),
                "measured": self.measured.as_dict() if self.measured else None,
                "verdict": self.verdict, "note": self.note}


def match_measurements(claims: Mapping[str, Claim], measured: Mapping[str, Measurement]):
    """Pair every claim with its measurement; names the ids that are missing or unknown."""
    missing = [k for k in claims if k not in measured]
    unknown = [k for k in measured if k not in claims]
    if missing or unknown:
        raise KeyError(f"measure() must return exactly the CLAIMS ids; missing {missing}, "
                       f"unknown {unknown}")
    for k, m in measured.items():
        if not isinstance(m, Measurement):
            raise TypeError(f"measure()[{k!r}] must be a Measurement, not {type(m).__name__}")
    return [(claims[k], measured[k]) for k in claims]
