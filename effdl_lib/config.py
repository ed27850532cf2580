"""Typed chapter configurations with ``smoke`` / ``cpu`` / ``gpu`` profiles.

A chapter declares a frozen dataclass of its parameters, one instance per profile, and
its parameter constraints as data (``CONSTRAINTS``: :class:`Range`, :class:`OneOf`), as
scikit-learn does for its estimators. :meth:`ChapterConfig.resolve` checks every name,
type and value and fails with the valid choices; :meth:`ChapterConfig.validate` is left
for the checks that relate several fields.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, ClassVar, Mapping

PROFILES = ("smoke", "cpu", "gpu")
DEVICES = ("cpu", "cuda", "auto")


class ConfigError(ValueError):
    """A bad profile, parameter name, type or value; the message lists what is valid."""


# ---------------------------------------------------------------- declarative constraints

@dataclasses.dataclass(frozen=True)
class Range:
    """``lo <= value <= hi`` (either bound may be None; ``lo_open``/``hi_open`` make it
    strict). Applies to every item of a tuple-valued parameter."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def ok(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    @property
    def text(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}" \
               f"{')' if self.hi_open or self.hi is None else ']'}"


@dataclasses.dataclass(frozen=True)
class OneOf:
    """The value (or every item of a tuple) is one of ``options``."""
    options: tuple

    def ok(self, value) -> bool:
        return value in self.options

    @property
    def text(self) -> str:
        return "one of " + ", ".join(map(str, self.options))


@dataclasses.dataclass(frozen=True)
class NonEmpty:
    """A tuple-valued parameter with at least one item."""

    def ok(self, value) -> bool:
        return len(value) > 0

    @property
    def text(self) -> str:
        return "a non-empty list"


Constraint = Range | OneOf | NonEmpty


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the annotated type, or ConfigError; an annotation this function does
    not know is an error too, so no parameter passes unchecked."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"parameter {name!r}: unsupported annotation {hint!r}")
        return _coerce(name, value, inner[0])
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"parameter {name!r} must be {hint.__name__}, got "
                          f"{type(value).__name__} {value!r}")
    if origin is tuple:
        items = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(items) != 1:
            raise TypeError(f"parameter {name!r}: only tuple[X, ...] is supported, not {hint!r}")
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter {name!r} must be a list of {_type_name(items[0])}, "
                              f"got {type(value).__name__} {value!r}")
        return tuple(_coerce(f"{name}[{i}]", v, items[0]) for i, v in enumerate(value))
    raise TypeError(f"parameter {name!r}: unsupported annotation {hint!r}; use int, float, "
                    f"str, bool, tuple[X, ...] or X | None")


def _check_constraint(name: str, value: Any, constraint: Constraint) -> None:
    if value is None:
        return
    if isinstance(constraint, NonEmpty):
        bad = not constraint.ok(value)
    else:
        items = value if isinstance(value, tuple) else (value,)
        bad = not all(constraint.ok(v) for v in items)
    if bad:
        raise ConfigError(f"parameter {name!r} must be {constraint.text}, got {value!r}")


# ---------------------------------------------------------------- the base class

@dataclasses.dataclass(frozen=True)
class ChapterConfig:
    """Base class: ``threads`` and ``device`` for every chapter (keyword-only, so
    subclasses declare their own fields first). Subclasses add fields, ``CONSTRAINTS``
    and ``profiles()``, and may override :meth:`validate` for cross-field checks."""

    threads: int = dataclasses.field(default=1, kw_only=True)
    device: str = dataclasses.field(default="cpu", kw_only=True)

    CONSTRAINTS: ClassVar[dict[str, Any]] = {}
    _BASE_CONSTRAINTS: ClassVar[dict[str, Any]] = {"threads": Range(1, 256),
                                                   "device": OneOf(DEVICES)}

    def validate(self) -> None:
        """Raise ConfigError for combinations of values that are invalid together."""

    @classmethod
    def profiles(cls) -> Mapping[str, "ChapterConfig"]:
        raise NotImplementedError

    @classmethod
    def constraints(cls) -> dict[str, Any]:
        table = {**cls._BASE_CONSTRAINTS, **cls.CONSTRAINTS}
        unknown = set(table) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"{cls.__name__}.CONSTRAINTS names unknown fields {sorted(unknown)}")
        return table

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Per field: its type and constraint, as the parameters cell documents them."""
        hints = typing.get_type_hints(cls)
        table = cls.constraints()
        def name(hint):
            return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        return {f.name: " ".join(filter(None, [name(hints[f.name]),
                                               getattr(table.get(f.name), "text", "")]))
                for f in dataclasses.fields(cls)}

    @classmethod
    def resolve(cls, profile: str, overrides: Mapping[str, Any] | None = None):
        table = cls.profiles()
        if profile not in table:
            raise ConfigError(f"unknown profile {profile!r}; choose one of: "
                              f"{', '.join(table)}")
        fields = [f.name for f in dataclasses.fields(cls)]
        changes = {}
        for name, value in (overrides or {}).items():
            if name not in fields:
                raise ConfigError(f"unknown parameter {name!r} for {cls.__name__}; "
                                  f"valid parameters: profile, {', '.join(fields)}")
            if value is not None:  # None in the parameters cell: take the profile's value
                changes[name] = value
        return dataclasses.replace(table[profile], **changes).checked()

    def checked(self):
        """This config with every field coerced to its type and every constraint and
        cross-field rule checked; raises ConfigError (TypeError for a bad annotation)."""
        hints = typing.get_type_hints(type(self))
        values = {f.name: _coerce(f.name, getattr(self, f.name), hints[f.name])
                  for f in dataclasses.fields(self)}
        for name, constraint in type(self).constraints().items():
            _check_constraint(name, values[name], constraint)
        cfg = dataclasses.replace(self, **values)
        cfg.validate()
        return cfg

    def asdict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


def require(condition: bool, message: str) -> None:
    """For :meth:`ChapterConfig.validate`: raise ConfigError(message) unless condition."""
    if not condition:
        raise ConfigError(message)


def notebook_parameters(namespace: Mapping[str, Any], before: set[str]) -> dict[str, Any]:
    """The names a notebook gained since ``before``: its parameters cell plus whatever
    papermill injected, so a misspelt ``-p`` name is caught instead of ignored."""
    return {k: v for k, v in namespace.items()
            if k not in before and not k.startswith("_") and k != "profile"}
