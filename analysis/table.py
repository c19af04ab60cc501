"""The comparison table of a study, regenerated from what MLflow recorded.

    python -m analysis.table NAME [--tracking-uri URI] [--out DIR] [--by activation] [--storage DIR]
    python -m study table NAME ...    (the same command)

Writes reports/NAME/: table.md, table.csv, table.tex, the plots, and logs them to the study's run.
One row per model type (× the `--by` columns): its best trial by the ranking rule every view uses
(`study.trial.ranking`: full-budget trials outrank early-stopped ones, degenerate trials come last), with
mean ± standard deviation over repeats (trials that differ only in their seed). A row whose best
trial stopped early or is degenerate says so in its `standing` column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.seed import seed_comparison
from models import ConfigError, StudyError
from study import tracking
from study.trial.metrics import DEFAULT_OBJECTIVE, METRICS, SHOWN
from study.trial.ranking import rank
from study.trial.states import TrialState as S
from study.views.runs import setting_columns, state_counts, study_runs, varying_settings


def searched_params(info: dict[str, str]) -> list[str] | None:
    """The parameters the study searched, as recorded (None for studies that predate the record)."""
    return info["searched"].split(",") if info.get("searched") else None


def build_table(
    runs: pd.DataFrame, objective: str, by: list[str], searched: list[str] | None = None
) -> pd.DataFrame:
    """One row per model type (× `by`): its best trial by the ranking rule (`study.trial.ranking`),
    with the metrics averaged over that trial's repeats (same settings and standing, distinct
    seeds; a seed run twice counts once).

    `searched` names the parameters shown in the settings column (default: those that vary)."""
    ranked = rank(runs, objective)
    if not len(ranked):
        raise ConfigError("the study has no finished trial with its objective: nothing to compare")
    unknown = [b for b in by if b not in ranked]
    if unknown:
        raise ConfigError(f"--by {', '.join(unknown)}: not a parameter of this study's trials")
    settings = setting_columns(runs)
    if searched is None:
        searched = varying_settings(ranked)
    searched = [c for c in searched if c in ranked and c not in ("model", "seed")]
    key = ranked[settings].apply(lambda r: "|".join(map(str, r)), axis=1)
    rows = []
    keys = ["model", *by]
    for group_key, group in ranked.groupby(keys, sort=False, dropna=False):
        top = group.iloc[0]  # groupby keeps the ranked order within a group
        repeats = group[(key[group.index] == key[top.name]) & (group["tier"] == top["tier"])]
        repeats = repeats.drop_duplicates("seed") if "seed" in repeats else repeats
        row = dict(
            zip(keys, group_key if isinstance(group_key, tuple) else (group_key,), strict=True)
        )
        row["n"] = len(repeats)
        given = top.get("given")  # the keys the trial was given: not another model's defaults
        row["settings"] = ", ".join(
            f"{c}={_fmt(top[c])}"
            for c in searched
            if c not in keys and _present(top[c]) and (given is None or c in given)
        )
        row["standing"] = top["standing"] or None
        for metric in SHOWN:
            values = repeats[metric].dropna() if metric in repeats else pd.Series(dtype=float)
            row[metric] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    from models import MODELS  # here, not at import: `python -m study status` loads this module

    order = {m: i for i, m in enumerate(MODELS)}
    table = table.sort_values(
        keys, key=lambda s: s.map(order) if s.name == "model" else s.astype(str)
    )
    # `standing` stays, empty or not: the table's prose speaks of it
    empty = [c for c in table.columns if c not in (*keys, "standing") and table[c].isna().all()]
    return table.drop(columns=empty).reset_index(drop=True)


def _present(value: object) -> bool:
    return not (value is None or (isinstance(value, float) and np.isnan(value)))


def _metric_text(metric: str, value: float) -> str:
    if metric in ("params", "epoch"):
        return f"{value:,.0f}"
    if metric == "train_seconds":
        return f"{value:.1f}"
    return f"{value:.4g}"


def _fmt(value: object) -> str:

    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(
    table: pd.DataFrame, seed: pd.DataFrame, counts: dict[str, int], study: str, objective: str
) -> str:
    """table.md: our table, what each number is, the seed's numbers beside ours."""
    metrics = [m for m in SHOWN if m in table]
    head = [c for c in table.columns if c not in metrics and not c.endswith("_std")]
    lines = [
        f"# Study {study}",
        "",
        f"Trials: {counts[S.DONE]} ran to their last epoch, {counts[S.STOPPED]} stopped "
        f"early (ASHA), {counts[S.FAILED]} failed, {counts[S.INTERRUPTED] + counts[S.RUNNING]} "
        "unfinished. Each row is the "
        f"best trial of its model type by `{objective}` under the ranking rule every view uses "
        "(full-budget trials outrank early-stopped ones; degenerate trials, no better than "
        "predicting the mean digit, come last); a ± gives the standard deviation over `n` "
        "repeats (distinct seeds, same settings). Rows are chosen on the validation digits; "
        "the `test_*` columns come from the test split, which nothing selected on: report "
        "those. `pca_mse` is the linear baseline at the trial's code size; a row whose "
        'standing says "no better than PCA" did not beat it.',
        "",
        "All metrics are measured on held-out digits the model did not train on:",
        "",
        *[f"- `{m}`: {METRICS[m].measures}" for m in metrics],
        "",
        "| " + " | ".join(head + metrics) + " |",
        "|" + "---|" * (len(head) + len(metrics)),
    ]
    for _, row in table.iterrows():
        cells = [_fmt(row[c]) if pd.notna(row[c]) else "" for c in head]
        for m in metrics:
            value, std = row[m], row.get(f"{m}_std", np.nan)
            text = "" if pd.isna(value) else _metric_text(m, value)
            if text and pd.notna(std):
                text += f" ± {std:.2g}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Beside the seed report",
        "",
        SEED_NOTE,
        "",
        "| " + " | ".join(seed.columns) + " |",
        "|" + "---|" * len(seed.columns),
    ]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in seed.itertuples(index=False)]
    return "\n".join(lines) + "\n"


SEED_NOTE = (
    "The seed report is the one-off MNIST comparison this tool grew out of (its numbers were "
    "measured on training digits; see `analysis/seed.py`). A row here is filled when this study "
    "has a trial of that configuration; `make reproduce` runs the study that fills them all "
    '(search_spaces/seed.yaml). "–": no trial of this study matches it.'
)


def write_report(uri: str, study: str, out: Path, by: list[str], storage: str | None) -> list[Path]:
    """Write every file of the report into `out` and log them to the study's run; returns the files."""
    from analysis.plots import write_plots

    runs = study_runs(uri, study)
    if not len(runs):
        raise ConfigError(f"study {study!r} has no trial runs in {uri}")
    info = tracking.study_params(uri, study)

    objective = info.get("objective", DEFAULT_OBJECTIVE)
    table = build_table(runs, objective, by, searched_params(info))

    counts = state_counts(runs)
    seed = seed_comparison(rank(runs, objective))
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown(table, seed, counts, study, objective))
    table.to_csv(out / "table.csv", index=False, float_format="%.6g")
    seed.to_csv(out / "seed_comparison.csv", index=False)
    (out / "table.tex").write_text(table.to_latex(index=False, float_format="%.4g", na_rep=""))
    files = [out / n for n in ("table.md", "table.csv", "seed_comparison.csv", "table.tex")]
    search = search_of(study, storage, info)
    files += write_plots(uri, study, runs, objective, out, search, searched_params(info))
    record = tracking.ensure_study(uri, study, "", {})
    tracking.log_report(record, str(out), "report")
    return files


def search_of(study: str, storage: str | None, info: dict) -> str | None:
    """Where the study's Optuna search is kept (`folder.search_storage`), found through its
    folder (`--storage`, else the folder the study recorded); None when there is none here."""
    from study.sweep.folder import STUDY_FILE, saved_launch, search_storage, study_dir

    recorded = info.get("folder", "")
    if storage:
        storage, folder = str(storage), study_dir(storage, study)
    elif recorded and "://" not in recorded:
        storage, folder = str(Path(recorded).parent), Path(recorded)
    else:
        return None  # a study in a bucket: its --storage says where
    if "://" not in storage and not (folder / STUDY_FILE).is_file():
        return search_storage(folder, None)  # a study folder from before study.json
    return search_storage(folder, saved_launch(storage, study)["options"].get("search_db"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments: shared by `python -m analysis.table` and `python -m study table`."""
    parser.add_argument("name", help="the study")
    parser.add_argument(
        "--tracking-uri",
        help=f"default: {tracking.STORE_DEFAULT}",
    )
    parser.add_argument("--out", help="folder for the report (default: reports/NAME)")
    parser.add_argument(
        "--by", action="append", default=[], help="also split rows by this parameter (repeatable)"
    )
    parser.add_argument(
        "--storage",
        help="the folder (or s3:// storage) holding the study, for Optuna's importances "
        "(default: the folder the study recorded)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the report of `args.name`; exit code 2 with one line on bad input."""
    try:
        out = Path(args.out or Path("reports") / args.name)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give a folder for the report")
        uri = tracking.resolve_tracking_uri(args.tracking_uri)
        tracking.check_reachable(uri, must_exist=True)
        files = write_report(uri, args.name, out, args.by, args.storage)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((out / "table.md").read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
