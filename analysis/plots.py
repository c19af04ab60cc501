"""The study's plots, from the tidy runs table. Each returns its file, or None when the study has
nothing to show for it (no noise parameter, a single activation, …)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from models import MODELS
from study import tracking
from study.sweep.folder import has_search, open_search
from study.trial.metrics import goal
from study.trial.ranking import best_per_model, rank
from study.trial.states import TrialState

# Fewer points than this say nothing a table does not: such plots are not drawn.
MIN_POINTS = 5
# Fixed metadata keeps the PNGs byte-identical between runs of the command.
PNG_META = {"Software": None}


def _save(fig, path: Path, note: str = "") -> Path:
    """Write the figure; `note` (which model types it leaves out, and why) goes under it."""
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="0.35", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1) if note else None)
    fig.savefig(path, dpi=90, metadata=PNG_META)
    plt.close(fig)
    return path


def _colour(model: str) -> str:
    """One colour per model type in every plot of a study (its place in the registry)."""
    return f"C{list(MODELS).index(model) % 10}" if model in MODELS else "0.5"


def _models(runs: pd.DataFrame) -> list[str]:
    return [m for m in MODELS if m in set(runs["model"])]


def left_out(runs: pd.DataFrame, done: pd.DataFrame) -> str:
    """What plots of full-budget trials leave out: the trials stopped early (their numbers come
    from fewer epochs) and the model types with no full-budget trial, each with the states of
    its trials; "" when nothing is left out."""
    stopped = int((runs["state"] == TrialState.STOPPED).sum())
    parts = [f"full-budget trials only: {stopped} stopped early not shown"] if stopped else []
    missing = [m for m in _models(runs) if m not in set(done["model"])]
    if missing:
        reasons = [
            f"{m} ({', '.join(sorted(set(runs.loc[runs['model'] == m, 'state'])))})"
            for m in missing
        ]
        parts.append("no full-budget trial, not shown: " + "; ".join(reasons))
    return "; ".join(parts) + " — see the table and learning_curves.png" if parts else ""


def objective_vs_latent(
    done: pd.DataFrame, objective: str, out: Path, note: str = ""
) -> Path | None:
    if "latent_dim" not in done or done["latent_dim"].notna().sum() < MIN_POINTS:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in _models(done):
        part = done[(done["model"] == model) & done["latent_dim"].notna()].sort_values("latent_dim")
        ax.plot(
            part["latent_dim"].astype(float),
            part[objective],
            "o",
            label=model,
            alpha=0.8,
            color=_colour(model),
        )
    ax.set_xscale("log", base=2)
    sizes = sorted(done["latent_dim"].dropna().astype(float).unique())
    ax.set_xticks(sizes, [f"{size:g}" for size in sizes])  # every size tried, readable
    ax.minorticks_off()
    ax.set(
        xlabel="latent dimension",
        ylabel=f"{objective} (held out)",
        title=f"{objective} against latent dimension",
    )
    ax.legend()
    return _save(fig, out / "objective_vs_latent.png", note)


def activations(done: pd.DataFrame, objective: str, out: Path, note: str = "") -> Path | None:
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
    ax.legend(title="activation", loc="upper left", bbox_to_anchor=(1.01, 1))  # off the bars
    return _save(fig, out / "activations.png", note)


def noise_vs_denoising(done: pd.DataFrame, out: Path, note: str = "") -> Path | None:
    if "noise" not in done or done["noise"].notna().sum() < MIN_POINTS:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in _models(done):
        part = done[(done["model"] == model) & done["noise"].notna()]
        if len(part):
            ax.plot(
                part["noise"].astype(float),
                part["denoise_mse"],
                "o",
                label=model,
                color=_colour(model),
            )
    ax.set(
        xlabel="training noise level",
        ylabel="denoise_mse (held out, noise 0.5)",
        title="noise level against denoising",
    )
    ax.legend()
    return _save(fig, out / "noise_vs_denoising.png", note)


def learning_curves(uri: str, runs: pd.DataFrame, objective: str, out: Path) -> Path | None:
    """The best trial of each model type (the ranking rule's, as in the table), its objective at
    every epoch."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, best in best_per_model(rank(runs, objective)).iterrows():
        model = best["model"]
        history = tracking.metric_history(uri, best["run_id"], objective)
        ax.plot(
            [step for step, _ in history],
            [value for _, value in history],
            marker="o",
            label=f"{model} ({best['trial_id']})",
            color=_colour(model),
        )
    ax.set(
        xlabel="epoch", ylabel=f"{objective} (held out)", title="learning curves of the best trials"
    )
    ax.legend()
    return _save(fig, out / "learning_curves.png")


def parallel_coordinates(
    done: pd.DataFrame, objective: str, params: list[str], out: Path, note: str = ""
) -> list[Path]:
    """Every compared trial as a line through its searched parameters and objective (PNG and
    HTML). Each axis is labelled with its values; a parameter a trial does not have (noise for
    a VAE) sits on the axis's "absent" mark below the others."""
    if len(done) < MIN_POINTS:
        return []
    columns = [p for p in params if p in done and done[p].notna().any()] + [objective]
    axes = {c: _axis(done[c]) for c in columns}
    scaled = pd.DataFrame({c: axes[c][0] for c in columns}, index=done.index)
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(columns)), 4.8))
    norm = plt.Normalize(done[objective].min(), done[objective].max())
    for (_, row), value in zip(scaled.iterrows(), done[objective], strict=True):
        ax.plot(range(len(columns)), row.values, color=plt.cm.viridis(norm(value)), alpha=0.7)
    for i, c in enumerate(columns):
        ax.axvline(i, color="0.6", linewidth=0.8)
        for y, text in zip(*axes[c][1:], strict=True):
            ax.annotate(
                text, (i, y), xytext=(3, 0), textcoords="offset points", fontsize=7, va="center"
            )
    ax.set_xticks(range(len(columns)), columns, rotation=20)
    ax.set_yticks([])
    ax.set_ylim(-0.2, 1.08)
    ax.set_title("parallel coordinates: one line per full-budget trial")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=objective)
    paths = [_save(fig, out / "parallel_coordinates.png", note)]
    paths.append(_parallel_html(scaled, axes, columns, done[objective], out, note))
    return paths


ABSENT = -0.12  # where an axis marks trials that do not have the parameter


def _axis(values: pd.Series) -> tuple[pd.Series, list[float], list[str]]:
    """Values scaled into [0, 1] (absent ones at ABSENT), tick positions and their labels."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        low, high = numeric.min(), numeric.max()
        span = (high - low) or 1.0
        scaled = (numeric - low) / span
        ticks, labels = [0.0, 1.0], [_fmt(low), _fmt(high)]
        if low == high:
            ticks, labels = [0.0], [_fmt(low)]
    else:
        names = sorted(values.dropna().astype(str).unique())
        step = 1 / max(len(names) - 1, 1)
        scaled = values.map(lambda v: None if pd.isna(v) else names.index(str(v)) * step)
        ticks, labels = [i * step for i in range(len(names))], names
    if values.isna().any():
        ticks, labels = [*ticks, ABSENT], [*labels, "absent"]
    return scaled.astype(float).fillna(ABSENT), ticks, labels


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _parallel_html(
    scaled: pd.DataFrame,
    axes: dict,
    columns: list[str],
    objective: pd.Series,
    out: Path,
    note: str,
) -> Path:
    import plotly.graph_objects as go

    dims = [
        {
            "label": c,
            "values": scaled[c].tolist(),
            "range": [ABSENT, 1.0],
            "tickvals": axes[c][1],
            "ticktext": axes[c][2],
        }
        for c in columns
    ]
    line = {
        "color": objective.tolist(),
        "colorscale": "Viridis",
        "showscale": True,
        "colorbar": {"title": {"text": objective.name}},
    }
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(
        title={
            "text": "one line per full-budget trial" + (f"<br><sub>{note}</sub>" if note else "")
        }
    )
    path = out / "parallel_coordinates.html"
    # plotly.js (4.7 MB) goes inside the file: the page then opens offline, on a cluster with
    # no internet and in MLflow's artifact viewer, which shows one file and not its neighbours
    fig.write_html(path, include_plotlyjs=True, full_html=True, div_id="parallel-coordinates")
    return path


def importances(study: str, search: str | None, out: Path) -> Path | None:
    """Optuna's parameter importances from the study's own Optuna study (`search`: where
    `folder.search_storage` says it is), computed as optuna-dashboard computes them (PED-ANOVA
    on the COMPLETE trials, lower-is-better target), so the two views of one study agree. Trials
    ASHA stopped are PRUNED there, and left out."""
    if search is None or not has_search(search):
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ot_study = optuna.load_study(study_name=study, storage=open_search(search))
    complete = [t for t in ot_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3:
        return None
    maximise = ot_study.direction == optuna.study.StudyDirection.MAXIMIZE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PED-ANOVA warns whenever a target is given
            scores = optuna.importance.get_param_importances(
                ot_study,
                target=(lambda t: -t.value) if maximise else None,
                evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
            )
    except (RuntimeError, ValueError):
        return None  # e.g. no parameter common to every trial
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(scores)[::-1]
    ax.barh(names, [scores[n] for n in names])
    ax.set(
        xlabel=f"importance (PED-ANOVA, as optuna-dashboard) over {len(complete)} COMPLETE "
        "trials\n(trials ASHA stopped are PRUNED in Optuna and left out)",
        title="parameter importances (Optuna)",
    )
    return _save(fig, out / "importances.png")


def write_plots(
    uri: str,
    study: str,
    runs: pd.DataFrame,
    objective: str,
    out: Path,
    search: str | None,
    searched: list[str] | None = None,
) -> list[Path]:
    """Every plot the study supports, written into `out`. `search`: where its Optuna study is
    (`importances`); `searched`: the parameters the study searched (default, for studies that
    predate that record: those that vary)."""
    from study.views.runs import varying_settings

    done = runs[runs["state"] == TrialState.DONE]
    searched = searched or ["model", *varying_settings(done)]
    note = left_out(runs, done)
    made = [
        objective_vs_latent(done, objective, out, note),
        activations(done, objective, out, note),
        noise_vs_denoising(done, out, note),
        learning_curves(uri, runs, objective, out),
        *parallel_coordinates(done, objective, searched, out, note),
        importances(study, search, out),
    ]
    return [p for p in made if p is not None]
