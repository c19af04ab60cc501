"""The space file: read as strict YAML and validated completely into a `study.sweep.space.Space`.

Every problem is reported before anything runs, as a `SpaceError` naming the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from models import MODELS, ConfigError
from models.errors import did_you_mean
from study.sweep.space import Param, Space, SpaceError
from study.trial.config import allowed_keys, split_config
from study.trial.metrics import DEFAULT_OBJECTIVE, OBJECTIVES

ALGORITHMS = ("tpe", "random", "grid")
TOP_KEYS = (
    "description",
    "dataset",
    "data_dir",
    "objective",
    "search",
    "num_samples",
    "epochs",
    "scheduler",
    "fixed",
    "params",
)
PARAM_KINDS = ("values", "int", "float")
PARAM_KEYS = (*PARAM_KINDS, "log", "step", "when")
# Keys the sweep sets itself, and where a user sets them instead: a space may neither sample
# them nor fix them (a fixed `epochs` would leave ASHA's limit at the top-level one, a fixed
# `dataset` would escape the data check made before launch).
SWEEP_OWNED = {
    "dataset": "the top-level key 'dataset' (or --dataset)",
    "data_dir": "the top-level key 'data_dir' (or --data-dir)",
    "epochs": "the top-level key 'epochs' (per model: epochs: {default: N, vae: M})",
    "device": "--gpus-per-trial (the sweep places each trial on a device it was given)",
}
# Objectives measured only after a trial's last epoch: ASHA, which compares trials at earlier
# epochs, would see no value there and stop nothing.
FINAL_ONLY = ("finetune_acc",)

MAX_SPACE_BYTES = 100_000


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader without what a space file never needs and a hostile one abuses:
    aliases (a few hundred bytes of nested anchors expand to gigabytes) and duplicate keys
    (the last one silently wins)."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in a space file", mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_space(path: str | Path, overrides: dict[str, Any] | None = None) -> Space:
    """Read and validate the space file at `path`, with top-level `overrides` (e.g. the data set
    from the command line) applied first; raises SpaceError naming file and key."""
    path = Path(path)
    if not path.is_file():
        raise SpaceError(f"{path}: no such space file (see search_spaces/ for examples)")
    if path.stat().st_size > MAX_SPACE_BYTES:
        raise SpaceError(
            f"{path}: {path.stat().st_size:,} bytes; a space file is a few lines of YAML"
        )
    try:
        raw = yaml.load(path.read_text(), Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except UnicodeDecodeError:
        raise SpaceError(f"{path}: not a text file; a space file is YAML") from None
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    except RecursionError:
        raise SpaceError(
            f"{path}: nested too deeply; a space file is a few flat mappings"
        ) from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping of keys ({', '.join(TOP_KEYS)})")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return parse_space(raw, str(path))


def parse_space(raw: dict[str, Any], where: str) -> Space:
    """Validate the parsed YAML of a space file."""

    def fail(key: str, message: str) -> SpaceError:
        return SpaceError(f"{where}: {key}: {message}")

    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        hint = did_you_mean(unknown[0], TOP_KEYS)
        raise fail(unknown[0], f"unknown key{hint}; allowed: {', '.join(TOP_KEYS)}")
    objective = raw.get("objective", DEFAULT_OBJECTIVE)
    if objective not in OBJECTIVES:
        raise fail("objective", f"unknown metric {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    search = raw.get("search", {"algorithm": "tpe", "seed": 0})
    search = {"algorithm": search} if isinstance(search, str) else search
    if not isinstance(search, dict) or set(search) - {"algorithm", "seed"}:
        raise fail("search", "expected {algorithm: tpe|random|grid, seed: N}")
    if search.get("algorithm", "tpe") not in ALGORITHMS:
        raise fail("search.algorithm", f"{search['algorithm']!r}; allowed: {', '.join(ALGORITHMS)}")
    seed = search.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise fail("search.seed", f"must be a whole number >= 0 (or left out), got {seed!r}")
    num_samples = _positive_int(raw.get("num_samples", 10), fail, "num_samples")
    epochs = _epochs(raw.get("epochs", 10), fail)
    scheduler = _scheduler(raw.get("scheduler", {"type": "asha"}), min(epochs.values()), fail)
    fixed = _fixed(raw.get("fixed") or {}, fail)
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise fail("params", "expected a mapping of parameter: range (at least one)")
    params = tuple(_param(name, spec, fixed, params_raw, fail) for name, spec in params_raw.items())
    space = Space(
        path=where,
        dataset=raw.get("dataset", "mnist-5k"),
        data_dir=raw.get("data_dir"),
        objective=objective,
        mode=OBJECTIVES[objective],
        algorithm=search.get("algorithm", "tpe"),
        seed=seed,
        num_samples=num_samples,
        epochs=epochs,
        scheduler=scheduler,
        fixed=fixed,
        params=params,
        description=str(raw.get("description", "")),
        raw=raw,
    )
    if space.algorithm == "grid":
        ranged = [p.name for p in params if p.kind != "values"]
        if ranged:
            raise fail(f"params.{ranged[0]}", "grid search needs a list of values, not a range")
        space = replace(space, num_samples=_grid_samples(raw, fail))
    if objective == "finetune_acc" and not int(fixed.get("finetune_epochs", 0)):
        raise fail("objective", "finetune_acc needs fixed: {finetune_epochs: N} with N >= 1")
    if objective in FINAL_ONLY and scheduler["type"] != "none":
        raise fail(
            "objective",
            f"{objective} is measured after a trial's last epoch only, so ASHA would compare "
            "trials on nothing and stop none: use scheduler: none, or another objective",
        )
    _check_against_models(space, fail)
    return space


def _fixed(fixed: Any, fail) -> dict[str, Any]:
    """The `fixed` mapping: parameter: value for every trial, and model: {parameter: value} for
    that model's trials only; no key the sweep owns."""
    if not isinstance(fixed, dict):
        raise fail("fixed", "expected a mapping of parameter: value")
    for key, value in fixed.items():
        if key in MODELS:
            if not isinstance(value, dict):
                raise fail(f"fixed.{key}", f"expected a mapping of model {key!r}'s parameters")
            for inner in value:
                _not_sweep_owned(f"fixed.{key}.{inner}", inner, fail)
        else:
            _not_sweep_owned(f"fixed.{key}", key, fail)
    return fixed


def _not_sweep_owned(where: str, name: str, fail) -> None:
    if name in SWEEP_OWNED:
        raise fail(where, f"set by the sweep itself; use {SWEEP_OWNED[name]}")


def _positive_int(value: Any, fail, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(key, f"must be a whole number >= 1, got {value!r}")
    return value


def _grid_samples(raw: dict[str, Any], fail) -> int:
    """A grid runs each point once: training is deterministic, so a repeat of a point is an exact
    copy. Repeats that mean something vary the seed."""
    if raw.get("num_samples", 1) != 1:
        raise fail(
            "num_samples",
            "a grid runs each point once; for repeats with other seeds add `seed: [0, 1, 2]` "
            "under params",
        )
    return 1


def _epochs(value: Any, fail) -> dict[str, int]:
    if not isinstance(value, dict):
        return {"default": _positive_int(value, fail, "epochs")}
    unknown = sorted(set(value) - {"default", *MODELS})
    if unknown:
        raise fail(f"epochs.{unknown[0]}", f"unknown model; allowed: default, {', '.join(MODELS)}")
    if "default" not in value:
        raise fail("epochs", "a per-model mapping needs a 'default' entry")
    return {k: _positive_int(v, fail, f"epochs.{k}") for k, v in value.items()}


def _scheduler(spec: Any, epochs: int, fail) -> dict[str, Any]:
    spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
    kind = spec.get("type", "asha")
    if kind == "none":
        return {"type": "none"}
    if kind != "asha":
        raise fail("scheduler.type", f"{kind!r}; allowed: asha, none")
    unknown = sorted(set(spec) - {"type", "grace_period", "reduction_factor", "by_model"})
    if unknown:
        raise fail(
            f"scheduler.{unknown[0]}",
            "unknown key; allowed: type, grace_period, reduction_factor, by_model",
        )
    by_model = spec.get("by_model", True)
    if not isinstance(by_model, bool):
        raise fail("scheduler.by_model", f"must be true or false, got {by_model!r}")
    grace = spec.get("grace_period", 1)
    if not isinstance(grace, int) or not 1 <= grace <= epochs:
        raise fail(
            "scheduler.grace_period",
            f"must be a whole number in [1, epochs ({epochs})], got {grace!r}",
        )
    factor = spec.get("reduction_factor", 2)
    if not isinstance(factor, int | float) or isinstance(factor, bool) or not 1 < factor < 1e6:
        raise fail("scheduler.reduction_factor", f"must be > 1, got {factor!r}")
    return {"type": "asha", "grace_period": grace, "reduction_factor": factor, "by_model": by_model}


def _param(name: str, spec: Any, fixed: dict, all_params: dict, fail) -> Param:
    key = f"params.{name}"
    _not_sweep_owned(key, name, fail)
    if name in fixed:
        raise fail(key, "is also in fixed; keep one")
    if not isinstance(spec, dict):
        spec = {"values": spec if isinstance(spec, list) else [spec]}
    unknown = sorted(set(spec) - set(PARAM_KEYS))
    if unknown:
        raise fail(f"{key}.{unknown[0]}", f"unknown key; allowed: {', '.join(PARAM_KEYS)}")
    kinds = [k for k in PARAM_KINDS if k in spec]
    if len(kinds) != 1:
        raise fail(key, "give exactly one of values: [...], int: [low, high], float: [low, high]")
    kind = kinds[0]
    when = _condition(spec.get("when", {}), name, all_params, f"{key}.when", fail)
    for model, own in fixed.items():
        if model in MODELS and name in own and model in when.get("model", (model,)):
            raise fail(key, f"is also in fixed.{model}; keep one")
    if kind == "values":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise fail(f"{key}.values", "must be a non-empty list")
        return Param(name, kind, values=tuple(values), when=when)
    bounds = spec[kind]
    try:
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ValueError  # a string such as "28" would iterate as its characters
        low, high = (float(b) for b in bounds)  # YAML reads 1e-3 as a string: accept it
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError
    except (TypeError, ValueError):
        raise fail(
            f"{key}.{kind}", f"expected [low, high] of two finite numbers, got {bounds!r}"
        ) from None
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise fail(f"{key}.int", f"bounds must be whole numbers, got {bounds!r}")
    if not low < high:
        raise fail(
            f"{key}.{kind}", f"empty or inverted range [{low:g}, {high:g}]: low must be < high"
        )
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise fail(f"{key}.log", f"a log range needs low > 0, got {low:g}")
    step = spec.get("step")
    if step is not None:
        try:  # YAML reads 1e-3 (no dot) as a string
            step = (int if kind == "int" else float)(float(step))
        except (TypeError, ValueError):
            raise fail(f"{key}.step", f"must be a number > 0, got {step!r}") from None
        if log or not step > 0:
            raise fail(f"{key}.step", "must be a number > 0 and cannot combine with log")
    return Param(name, kind, low=low, high=high, log=log, step=step, when=when)


def _condition(when: Any, name: str, all_params: dict, key: str, fail) -> dict[str, tuple]:
    if not isinstance(when, dict):
        raise fail(key, "expected {parameter: value or [values]}")
    earlier = list(all_params)[: list(all_params).index(name)]
    out = {}
    for other, allowed in when.items():
        if other not in earlier:
            where = "does not exist" if other not in all_params else "comes after it"
            raise fail(
                f"{key}.{other}",
                f"condition on a parameter that {where}; conditions may name: {', '.join(earlier) or 'nothing'}",
            )
        out[other] = tuple(allowed) if isinstance(allowed, list) else (allowed,)
    return out


def _check_against_models(space: Space, fail) -> None:
    """Every trial config the space can produce must be one its model accepts."""
    model_param = next((p for p in space.params if p.name == "model"), None)
    models_ = list(model_param.values) if model_param else [space.fixed.get("model", "ae")]
    for m in models_:
        if m not in MODELS:
            raise fail(
                "params.model" if model_param else "fixed.model",
                f"unknown model {m!r}{did_you_mean(m, MODELS)}; allowed: {', '.join(MODELS)}",
            )
    for p in space.params:
        wrong = [m for m in p.when.get("model", ()) if m not in models_]
        if wrong:
            raise fail(
                f"params.{p.name}.when.model",
                f"{wrong[0]!r} is not among the study's models{did_you_mean(wrong[0], models_)}; "
                f"they are {', '.join(map(str, models_))}",
            )
    for m in space.fixed:
        if m in MODELS and m not in models_:
            raise fail(
                f"fixed.{m}",
                f"{m!r} is not among the study's models; they are {', '.join(map(str, models_))}",
            )
    for m in models_:
        accepted = set(allowed_keys(m))
        base = space.trial_config({"model": m})
        own = {k: f"fixed.{m}.{k}" for k in space.fixed.get(m) or {}}
        for key, where in {
            **{k: f"fixed.{k}" for k in space.fixed if k not in MODELS},
            **own,
        }.items():
            if key not in accepted:
                raise fail(
                    where,
                    f"model {m!r} has no parameter {key!r}; it accepts {', '.join(sorted(accepted))}",
                )
        _try(base, "fixed", fail)
        for p in space.params:
            if p.name == "model" or m not in p.when.get("model", (m,)):
                continue
            if p.name not in accepted:
                raise fail(f"params.{p.name}", _not_a_parameter(p.name, m, models_))
            for value in p.extremes():
                _try({**base, p.name: value}, f"params.{p.name}", fail)
    if space.objective == "val_bce":
        _check_bce_comparable(space, models_, fail)


def _check_bce_comparable(space: Space, models_: list[str], fail) -> None:
    """val_bce ranks a study only where every trial's outputs come from a sigmoid: an output
    layer that reaches exactly 0 or 1 (relu, tanh, linear, clipped into the image range) scores
    log(eps) on those pixels, so its BCE depends on the clamp constant, not on the model."""
    for m in models_:
        configs = [space.trial_config({"model": m})]
        for p in space.params:
            if p.name != "model" and m in p.when.get("model", (m,)):
                configs += [{**configs[0], p.name: v} for v in p.extremes()]
        for config in configs:
            settings, model_config = split_config(config)
            output = MODELS[settings.model](model_config).output_activation
            if output != "sigmoid":
                raise fail(
                    "objective",
                    f"val_bce is comparable only between models whose output is a sigmoid, but "
                    f"model {m!r} ends in {output!r} here; use objective: val_mse (the default), "
                    f"or give {m!r} output_activation: sigmoid",
                )


def _not_a_parameter(name: str, model: str, models_: list[str]) -> str:
    """Why `name` cannot reach `model`: a misspelling, or a parameter of other models only."""
    having = [m for m in models_ if name in allowed_keys(m)]
    if not having:
        known = sorted({k for m in MODELS for k in allowed_keys(m)})
        return f"no model has a parameter {name!r}{did_you_mean(name, known)}"
    return (
        f"applies to model {model!r}, which has no such parameter; add "
        f"when: {{model: [{', '.join(having)}]}} naming only models that have it"
    )


def _try(config: dict[str, Any], key: str, fail) -> None:
    try:
        split_config(config)
    except ConfigError as exc:
        raise fail(key, f"for model {config['model']!r}: {exc}") from None
