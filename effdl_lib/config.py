"""Typed chapter configurations with ``smoke`` / ``cpu`` / ``gpu`` profiles.

A chapter declares a frozen dataclass of its parameters and one instance per profile.
Notebooks take ``profile`` plus any field as a papermill parameter; :func:`resolve`
checks every name, type and value and fails with the valid choices.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

PROFILES = ("smoke", "cpu", "gpu")


class ConfigError(ValueError):
    """A bad profile, parameter name, type or value; the message lists what is valid."""


def _coerce(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"parameter {name!r} must be {hint.__name__}, got "
                          f"{type(value).__name__} {value!r}")
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"parameter {name!r} must be a list of {item.__name__}, "
                              f"got {type(value).__name__} {value!r}")
        return tuple(_coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    return value


@dataclasses.dataclass(frozen=True)
class ChapterConfig:
    """Base class; subclasses add fields and may override :meth:`validate`."""

    def validate(self) -> None:
        """Raise ConfigError for values out of range (subclasses extend)."""

    @classmethod
    def profiles(cls) -> Mapping[str, "ChapterConfig"]:
        raise NotImplementedError

    @classmethod
    def resolve(cls, profile: str, overrides: Mapping[str, Any] | None = None):
        table = cls.profiles()
        if profile not in table:
            raise ConfigError(f"unknown profile {profile!r}; choose one of: "
                              f"{', '.join(table)}")
        base = table[profile]
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        changes = {}
        for name, value in (overrides or {}).items():
            if name not in fields:
                raise ConfigError(f"unknown parameter {name!r} for {cls.__name__}; "
                                  f"valid parameters: profile, {', '.join(fields)}")
            if value is not None:
                changes[name] = _coerce(name, value, hints[name])
        cfg = dataclasses.replace(base, **changes)
        cfg.validate()
        return cfg

    def asdict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def notebook_parameters(namespace: Mapping[str, Any], before: set[str]) -> dict[str, Any]:
    """The names a notebook gained since ``before``: its parameters cell plus whatever
    papermill injected, so a misspelt ``-p`` name is caught instead of ignored."""
    return {k: v for k, v in namespace.items()
            if k not in before and not k.startswith("_") and k != "profile"}
