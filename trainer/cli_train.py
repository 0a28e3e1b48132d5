"""``ablate train CONFIG [--set k=v ...] [--seed N]``: one trial, without the service.

CONFIG is a YAML/JSON TrainConfig file or a preset name (``ablate train tiny --set
schedule.steps=200``). A rich progress bar goes to stderr; the final metrics go to stdout as
JSON, so the command composes with ``jq``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trainer.config import ConfigError, load_config
from trainer.loop import Progress as StepProgress
from trainer.loop import TrialDiverged


def train_command(
    config: str = typer.Argument(..., help="a preset name (tiny, small, base) or a YAML file"),
    set_: list[str] = typer.Option(  # noqa: B006
        [], "--set", help="override a config value: section.key=value (repeatable)"
    ),
    seed: int = typer.Option(0, "--seed", help="training seed"),
    tracking_uri: str = typer.Option(
        "sqlite:///.ablate/mlflow.db", "--tracking-uri", envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking store",
    ),
    experiment: str = typer.Option("ablate-train", "--experiment", help="MLflow experiment"),
    checkpoint_dir: Path | None = typer.Option(
        None, "--checkpoint-dir", help="default: <runtime.output_dir>/<trial key>"
    ),
) -> None:
    """Train one configuration and print its final metrics as JSON."""
    from trainer.keys import trial_key
    from trainer.trial import run_trial

    err = Console(stderr=True)
    try:
        cfg = load_config(config, set_)
    except ConfigError as e:
        err.print(f"[red]invalid config[/red] {e.field}: {e.reason}")
        raise typer.Exit(2) from e
    key = trial_key(cfg, seed)
    ckpt = checkpoint_dir or Path(cfg.runtime.output_dir) / key
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("[bold]train[/bold]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("train", total=cfg.planned_steps, info="")

        def on_progress(p: StepProgress) -> None:
            info = f"loss {p.metrics['loss']:.3f}" if "loss" in p.metrics else "evaluated"
            bar.update(task, completed=p.step, total=p.total_steps, info=info)

        try:
            result = run_trial(
                cfg, seed, tracking_uri=tracking_uri, experiment_name=experiment,
                trial_key=key, checkpoint_dir=ckpt, progress=on_progress,
                run_name=f"{cfg.preset or 'custom'} seed={seed}",
            )
        except TrialDiverged as e:
            err.print(f"[red]{e}[/red]")
            raise typer.Exit(1) from e
    json.dump(
        {"metrics": result.metrics, "protocol": result.protocol, "steps": result.steps,
         "trial_key": key, "mlflow_run_id": result.mlflow_run_id},
        sys.stdout, indent=2, sort_keys=True,
    )
    sys.stdout.write("\n")
