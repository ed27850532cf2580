"""Claims with verdict rules fixed before the run, and their checks against measurements."""
from __future__ import annotations

from dataclasses import dataclass, field

from .stats import Estimate

REPRODUCED = "reproduced"
PARTLY = "partly"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable at this scale"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE)
NOT_AVAILABLE = "not available"


@dataclass(frozen=True)
class Rule:
    """Compares an estimate with a threshold: reproduced when the whole 95 % CI is on the
    claimed side, partly when only the mean is, not reproduced otherwise. With fewer than
    ``min_n`` paired seeds nothing is decided: the claim is not testable at this scale."""
    threshold: float = 0.0
    direction: str = "above"  # or "below"
    min_n: int = 2

    def __post_init__(self):
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be 'above' or 'below', not {self.direction!r}")

    @property
    def text(self) -> str:
        side = ">" if self.direction == "above" else "<"
        return (f"reproduced if the 95% CI lies {self.direction} {self.threshold:g}; partly if "
                f"only the mean is {side} {self.threshold:g}; needs n >= {self.min_n}")

    def decide(self, est: Estimate | None) -> str:
        if est is None or est.n < self.min_n:
            return NOT_TESTABLE
        sign = 1.0 if self.direction == "above" else -1.0
        if sign * (est.ci_low if sign > 0 else est.ci_high) > sign * self.threshold:
            return REPRODUCED
        if sign * est.mean > sign * self.threshold:
            return PARTLY
        return NOT_REPRODUCED


@dataclass(frozen=True)
class Untestable:
    """A claim this companion states but cannot test (missing data, scale, numbers)."""
    reason: str

    @property
    def text(self) -> str:
        return f"not testable: {self.reason}"

    def decide(self, est: Estimate | None) -> str:
        return NOT_TESTABLE


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    metric: str
    rule: Rule | Untestable
    paper_value: str = NOT_AVAILABLE
    paper_source: str = NOT_AVAILABLE


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
        return {"id": c.id, "claim": c.claim, "paper_value": c.paper_value,
                "paper_source": c.paper_source, "metric": c.metric, "rule": c.rule.text,
                "measured": self.measured.as_dict() if self.measured else None,
                "verdict": self.verdict, "note": self.note}
