"""The registry of `frontier reproduce` experiments and the records they return.

An experiment is a function `(ctx: RunContext) -> ExperimentResult`, registered with `@experiment(...)`. It measures
something a paper (or our own README) claims and returns one `ClaimRow` per claim with a verdict; the report writer
renders only these records, so a stored `results.json` re-renders identically.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from frontier.errors import ConfigError, ExperimentNotFoundError
from frontier.io import atomic_write_json


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    # The claim was measured at a scale or on hardware where the paper's number does not transfer.
    NOT_COMPARABLE = "not-comparable"
    # The experiment raised before it could measure; the row carries the error.
    ERROR = "error"


class Mode(StrEnum):
    QUICK = "quick"  # minutes on a 2-core laptop; small subsets
    FULL = "full"  # the full measurement; may take hours on a CPU


@dataclass
class Measurement:
    """A measured number with an optional 95% confidence interval and the number of samples behind it."""

    value: float
    unit: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None

    def __str__(self) -> str:
        text = f"{self.value:.4g}"
        if self.ci_low is not None and self.ci_high is not None and math.isfinite(self.ci_low + self.ci_high):
            text += f" [{self.ci_low:.4g}, {self.ci_high:.4g}]"  # one sample has no interval (NaN): none shown
        if self.unit:
            text += f" {self.unit}"
        if self.n is not None:
            text += f" (n={self.n})"
        return text


@dataclass
class ClaimRow:
    """One claim, what we measured for it and whether it held."""

    claim: str
    measured: str  # human-readable figure, usually `str(Measurement)` or a short quote of model output
    verdict: Verdict
    command: str  # the shell command that reproduces this row
    source: str = ""  # where the claim comes from (paper section, anchor file)
    detail: str = ""


@dataclass
class ExperimentResult:
    """What an experiment returns; the runner fills in name, title, mode and seconds."""

    rows: list[ClaimRow]
    metrics: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # PNG paths relative to the report folder
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    name: str = ""
    title: str = ""
    mode: str = Mode.QUICK.value
    seconds: float = 0.0
    git_commit: str = ""  # the code that computed it (a resumed run may finish under newer code); "" if unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentResult:
        rows = [ClaimRow(**{**row, "verdict": Verdict(row["verdict"])}) for row in data["rows"]]
        return cls(**{**data, "rows": rows})


@dataclass
class RunContext:
    """What an experiment gets: the mode, a seed, and a folder for its figures and artefacts."""

    mode: Mode
    seed: int
    out_dir: Path  # the report folder; experiments write figures under out_dir / "figures"
    progress: bool = True

    @property
    def quick(self) -> bool:
        return self.mode is Mode.QUICK

    def figure_path(self, experiment: str, name: str) -> Path:
        path = self.out_dir / "figures" / f"{experiment}-{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def resumable(self, experiment: str, unit: str, config: dict, compute: Callable[[], dict]) -> dict:
        """`compute()` for one unit of an experiment's work (one trained model, say), kept in the report folder: a
        `--resume`d run reuses a unit stored with the same `config` (JSON values), so an interrupted long experiment
        loses only the unit it was in."""
        slug = re.sub(r"[^a-z0-9]+", "-", unit.lower()).strip("-")
        path = self.out_dir / f"{experiment}-units" / f"{slug}.json"
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("unit") == unit and stored.get("config") == config:
                return stored["result"]
        result = compute()
        atomic_write_json(path, {"unit": unit, "config": config, "result": result})
        return result


ExperimentFn = Callable[[RunContext], ExperimentResult]


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    title: str
    system: str  # which of frontier's systems it belongs to ("foundation", "kimi-linear", ...)
    fn: ExperimentFn


class Registry:
    """Experiments by name, in registration order."""

    def __init__(self) -> None:
        self._specs: dict[str, ExperimentSpec] = {}

    def register(self, name: str, title: str, system: str) -> Callable[[ExperimentFn], ExperimentFn]:
        def decorator(fn: ExperimentFn) -> ExperimentFn:
            if name in self._specs:
                raise ConfigError(f"experiment {name!r} is registered twice ({self._specs[name].fn.__module__})")
            self._specs[name] = ExperimentSpec(name=name, title=title, system=system, fn=fn)
            return fn

        return decorator

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> ExperimentSpec:
        if name not in self._specs:
            close = difflib.get_close_matches(name, self._specs, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ExperimentNotFoundError(
                f"unknown experiment {name!r}.{hint} Available: {', '.join(self._specs) or '(none)'}"
            )
        return self._specs[name]

    def select(self, only: list[str] | None) -> list[ExperimentSpec]:
        if not only:
            return list(self._specs.values())
        return [self.get(name) for name in only]


REGISTRY = Registry()


def experiment(name: str, title: str, system: str) -> Callable[[ExperimentFn], ExperimentFn]:
    """Register a `frontier reproduce` experiment in the global registry."""
    return REGISTRY.register(name, title, system)
