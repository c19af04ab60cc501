"""The study's plots, from the tidy runs table. Each returns its file, or None when the study has
nothing to show for it (no noise parameter, a single activation, …)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from models import MODELS
from study import tracking
from study.metrics import goal
from study.ranking import best_per_model, rank

# Fixed metadata keeps the PNGs byte-identical between runs of the command.
PNG_META = {"Software": None}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata=PNG_META)
    plt.close(fig)
    return path


def _models(runs: pd.DataFrame) -> list[str]:
    return [m for m in MODELS if m in set(runs["model"])]


def objective_vs_latent(done: pd.DataFrame, objective: str, out: Path) -> Path | None:
    if "latent_dim" not in done or done["latent_dim"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in _models(done):
        part = done[(done["model"] == model) & done["latent_dim"].notna()].sort_values("latent_dim")
        ax.plot(part["latent_dim"].astype(float), part[objective], "o", label=model, alpha=0.8)
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="latent dimension",
        ylabel=f"{objective} (held out)",
        title=f"{objective} against latent dimension",
    )
    ax.legend()
    return _save(fig, out / "objective_vs_latent.png")


def activations(done: pd.DataFrame, objective: str, out: Path) -> Path | None:
    if "activation" not in done or done["activation"].nunique() < 2:
        return None
    names = sorted(done["activation"].dropna().unique())
    models = _models(done)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.8 / len(names)
    for i, act in enumerate(names):
        best = [done[(done["model"] == m) & (done["activation"] == act)][objective] for m in models]
        values = [
            (s.min() if goal(objective) == "min" else s.max()) if len(s) else np.nan for s in best
        ]
        ax.bar(np.arange(len(models)) + i * width, values, width, label=act)
    ax.set_xticks(np.arange(len(models)) + width * (len(names) - 1) / 2, models)
    ax.set(ylabel=f"best {objective}", title="activation (e.g. relu against tanh), best trial each")
    ax.legend()
    return _save(fig, out / "activations.png")


def noise_vs_denoising(done: pd.DataFrame, out: Path) -> Path | None:
    if "noise" not in done or done["noise"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in _models(done):
        part = done[(done["model"] == model) & done["noise"].notna()]
        if len(part):
            ax.plot(part["noise"].astype(float), part["denoise_mse"], "o", label=model)
    ax.set(
        xlabel="training noise level",
        ylabel="denoise_mse (held out, noise 0.5)",
        title="noise level against denoising",
    )
    ax.legend()
    return _save(fig, out / "noise_vs_denoising.png")


def learning_curves(uri: str, runs: pd.DataFrame, objective: str, out: Path) -> Path | None:
    """The best trial of each model type (the ranking rule's, as in the table), its objective at
    every epoch."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, best in best_per_model(rank(runs, objective)).iterrows():
        model = best["model"]
        history = sorted(
            tracking.client(uri).get_metric_history(best["run_id"], objective), key=lambda m: m.step
        )
        ax.plot(
            [m.step for m in history],
            [m.value for m in history],
            marker="o",
            label=f"{model} ({best['trial_id']})",
        )
    ax.set(
        xlabel="epoch", ylabel=f"{objective} (held out)", title="learning curves of the best trials"
    )
    ax.legend()
    return _save(fig, out / "learning_curves.png")


def parallel_coordinates(
    done: pd.DataFrame, objective: str, params: list[str], out: Path
) -> list[Path]:
    """Every compared trial as a line through its parameters and objective (PNG and HTML)."""
    columns = [p for p in params if p in done and done[p].notna().any()] + [objective]
    encoded = pd.DataFrame(index=done.index)
    ticks: dict[str, tuple[list[float], list[str]]] = {}
    for c in columns:
        values = done[c]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum():
            encoded[c] = numeric
        else:
            labels = sorted(values.dropna().astype(str).unique())
            encoded[c] = values.astype(str).map({v: i for i, v in enumerate(labels)})
            ticks[c] = (list(range(len(labels))), labels)
    low, high = encoded.min(), encoded.max()
    scaled = (encoded - low) / (high - low).replace(0, 1)
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(columns)), 4.5))
    colours = plt.cm.viridis(
        (encoded[objective] - low[objective]) / max(high[objective] - low[objective], 1e-12)
    )
    for (_, row), colour in zip(scaled.iterrows(), colours, strict=True):
        ax.plot(range(len(columns)), row.values, color=colour, alpha=0.7)
    ax.set_xticks(range(len(columns)), columns, rotation=20)
    ax.set_yticks([])
    ax.set_title(f"parallel coordinates (colour: {objective})")
    paths = [_save(fig, out / "parallel_coordinates.png")]
    paths.append(_parallel_html(encoded, ticks, columns, objective, out))
    return paths


def _parallel_html(
    encoded: pd.DataFrame, ticks: dict, columns: list[str], objective: str, out: Path
) -> Path:
    import plotly.graph_objects as go

    dims = []
    for c in columns:
        dim = {"label": c, "values": encoded[c].fillna(-1).tolist()}
        if c in ticks:
            dim["tickvals"], dim["ticktext"] = ticks[c]
        dims.append(dim)
    fig = go.Figure(go.Parcoords(line={"color": encoded[objective].tolist(), "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))  # fmt: skip
    path = out / "parallel_coordinates.html"
    fig.write_html(path, include_plotlyjs=True, full_html=True, div_id="parallel-coordinates")
    return path


def importances(study: str, storage: Path | None, out: Path) -> Path | None:
    """Optuna's parameter importances (fANOVA, seeded), from the study's own Optuna database."""
    db = storage / study / "optuna.db" if storage else None
    if db is None or not db.is_file():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ot_study = optuna.load_study(study_name=study, storage=f"sqlite:///{db.resolve()}")
    complete = [t for t in ot_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3:
        return None
    try:
        scores = optuna.importance.get_param_importances(
            ot_study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (RuntimeError, ValueError):
        return None  # e.g. no parameter common to every trial
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names])
    ax.set(xlabel="importance (fANOVA)", title="parameter importances (Optuna)")
    return _save(fig, out / "importances.png")


def write_plots(
    uri: str, study: str, runs: pd.DataFrame, objective: str, out: Path, storage: Path | None
) -> list[Path]:
    """Every plot the study supports, written into `out`."""
    from study.runs import varying_settings

    done = runs[runs["state"] == "done"]
    searched = varying_settings(done)
    made = [
        objective_vs_latent(done, objective, out),
        activations(done, objective, out),
        noise_vs_denoising(done, out),
        learning_curves(uri, runs, objective, out),
        *parallel_coordinates(done, objective, searched, out),
        importances(study, storage, out),
    ]
    return [p for p in made if p is not None]
