"""What a sweep on a multi-node cluster needs: cluster configs that validate, and storage that
every node can see. No GPU or cloud account needed: everything here runs offline."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import yaml

from models import ConfigError, ResourceError


def validate_cluster_config(path: str | Path) -> dict[str, Any]:
    """Check a cluster-launcher YAML against the schema that ships with Ray; returns it prepared.

    Uses Ray's own `prepare_config` (fills provider defaults) and `validate_config` (the JSON
    schema in ray/autoscaler/ray-schema.json). Raises ConfigError naming the file and the problem.
    """
    from study.sweep import internals

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"{path}: not a YAML text file; a cluster config is YAML") from None
    if (
        not isinstance(raw, dict)
        or "provider" not in raw
        or "type" not in (raw.get("provider") or {})
    ):
        raise ConfigError(f"{path}: needs a provider with a type (aws, local, …)")
    try:
        prepared = internals.validate_cluster_config(copy.deepcopy(raw))
    except Exception as exc:  # jsonschema.ValidationError, ValueError, KeyError from Ray
        message = getattr(exc, "message", None) or str(exc)
        where = "/".join(map(str, getattr(exc, "absolute_path", []) or []))
        raise ConfigError(
            f"{path}: {where + ': ' if where else ''}{' '.join(message.split())[:300]}"
        ) from None
    return prepared


def check_shared_storage(folder: Path) -> None:
    """On a multi-node Ray cluster, refuse a `--storage` folder that some node cannot see.

    Writes a marker file and asks a task pinned to every alive node to read it back.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".aestudy-shared-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    marker.write_text(token)
    try:
        probe = ray.remote(num_cpus=0)(_read_marker)
        pending = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(marker))
            for n in nodes
        ]
        seen = ray.get(pending, timeout=120)
    finally:
        marker.unlink(missing_ok=True)
    blind = [
        n["NodeManagerAddress"] + f" ({n['NodeID'][:8]})"
        for n, s in zip(nodes, seen, strict=True)
        if s != token
    ]
    if blind:
        raise ResourceError(
            f"--storage {folder.parent} is not shared: node(s) {', '.join(blind)} cannot see it. On a "
            "multi-node cluster use a folder every node mounts (NFS, EFS, …), e.g. --storage /shared/studies"
        )


def _read_marker(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None
