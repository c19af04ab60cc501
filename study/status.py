"""`python -m study status NAME`: the trials of a study and their states, read from disk."""

from __future__ import annotations

from pathlib import Path

from study.config import flat_config
from study.progress import trial_state
from study.sweep import read_study, study_dir


def trial_states(name: str, storage: str | Path) -> list[dict]:
    """One dict per trial: id, state, model, epochs reported, objective value."""
    from ray.tune import ExperimentAnalysis

    space, options = read_study(name, storage)
    folder = study_dir(options.storage, name)
    if not any(folder.glob("experiment_state-*.json")):
        return []
    analysis = ExperimentAnalysis(str(folder))
    rows = []
    for t in sorted(analysis.trials, key=lambda t: t.trial_id):
        last = t.last_result or {}
        rows.append({
            "trial_id": t.trial_id,
            "state": trial_state(t.status, last, t.config),
            "model": flat_config(t.config).get("model", "ae"),
            "epochs": last.get("training_iteration", 0),
            space.objective: last.get(space.objective),
        })  # fmt: skip
    return rows


def print_status(name: str, storage: str | Path) -> None:
    space, _ = read_study(name, storage)
    rows = trial_states(name, storage)
    print(f"study {name}: {len(rows)} trials  (objective {space.objective}, {space.mode})")
    print(f"{'trial':<18} {'state':<14} {'model':<6} {'epochs':>6} {space.objective:>10}")
    for r in rows:
        value = r[space.objective]
        shown = f"{value:.4f}" if value is not None else "-"
        print(f"{r['trial_id']:<18} {r['state']:<14} {r['model']:<6} {r['epochs']:>6} {shown:>10}")
