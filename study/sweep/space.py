"""Search spaces: a validated space, its parameters, and sampling trial configs from it.

The format is shown in docs/usage.md and in `search_spaces/*.yaml`: top-level keys (dataset,
objective, search, num_samples, epochs, scheduler, fixed, params) and, per parameter, a list
(categorical) or one of `values`/`int`/`float` with optional `log`, `step` and `when` (a condition
on parameters declared above it). `study.sweep.space_file` reads and validates a file: every problem
is reported before anything runs, as a `SpaceError` naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models import MODELS, ConfigError


class SpaceError(ConfigError):
    """A space file is invalid; the message starts with the file and the key."""


@dataclass(frozen=True)
class Param:
    """One searched parameter: categorical `values`, or an `int`/`float` range."""

    name: str
    kind: str  # values | int | float
    values: tuple = ()
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None
    when: dict[str, tuple] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        """Whether this parameter exists, given the values chosen above it."""
        return all(chosen.get(k) in allowed for k, allowed in self.when.items())

    def suggest(self, trial: Any) -> Any:
        """Draw a value from an Optuna trial."""
        if self.kind == "values":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        """Values that validation tries against the model configs."""
        if self.kind == "values":
            return list(self.values)
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]


@dataclass(frozen=True)
class Space:
    """A validated search space."""

    path: str
    dataset: str
    data_dir: str | None
    objective: str
    mode: str
    algorithm: str
    seed: int | None
    num_samples: int
    epochs: dict[str, int]  # per model name, with "default" for the rest
    scheduler: dict[str, Any]
    fixed: dict[str, Any]  # every trial's; a model's name holds a mapping of that model's own
    params: tuple[Param, ...]
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)  # the mapping it was parsed from

    @property
    def max_epochs(self) -> int:
        return max(self.epochs.values())

    def fixed_for(self, model: str) -> dict[str, Any]:
        """The fixed values a trial of `model` gets: the shared ones, then the model's own."""
        shared = {k: v for k, v in self.fixed.items() if k not in MODELS}
        return {**shared, **(self.fixed.get(model) or {})}

    def trial_config(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """The full trial config for the sampled parameters `chosen`."""
        model = chosen.get("model", self.fixed.get("model", "ae"))
        epochs = self.epochs.get(model, self.epochs["default"])
        base = {"dataset": self.dataset, "data_dir": self.data_dir, "epochs": epochs}
        return {**base, **self.fixed_for(model), **chosen}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the categorical parameters, respecting conditions (grid search)."""
        points: list[dict[str, Any]] = [{}]
        for p in self.params:
            grown: list[dict[str, Any]] = []
            for pt in points:
                grown += [{**pt, p.name: v} for v in p.values] if p.active(pt) else [pt]
            points = grown
        return points


class SpaceSampler:
    """Optuna define-by-run function: draws the active parameters in file order.

    A plain class (not a closure) because Tune pickles the searcher, this included, for resuming.
    """

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for p in self.space.params:
            if p.active(chosen):
                chosen[p.name] = p.suggest(trial)
        # Optuna records the sampled values itself; the returned constants complete the config.
        return {k: v for k, v in self.space.trial_config(chosen).items() if k not in chosen}
