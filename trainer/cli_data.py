"""``ablate data shard CONFIG --out DIR``: a dataset the trainer reads (a Karpathy JSON, an
image folder, or the `shapes` benchmark) written as WebDataset shards, img2dataset's layout.

CONFIG is a preset or a YAML/JSON config whose ``data`` section names the source (``--set
data.dataset=imagefolder --set data.root=/data/pets``). The shard patterns to train on go to
stdout as JSON (``data.dataset``, ``data.train_shards``, ...), ready for ``--set``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from trainer.config import ConfigError, load_config

data_app = typer.Typer(help="datasets: convert them to WebDataset shards", no_args_is_help=True)


@data_app.command("shard")
def shard_command(
    config: str = typer.Argument(..., help="a preset name or a YAML file naming the data"),
    out: Path = typer.Option(..., "--out", help="folder to write <split>/NNNNN.tar into"),
    set_: list[str] = typer.Option(  # noqa: B006
        [], "--set", help="override a config value: data.key=value (repeatable)"
    ),
    per_shard: int = typer.Option(1000, "--per-shard", min=1, help="images per shard"),
    fmt: str = typer.Option("jpg", "--format", help="jpg or png (a source file already in "
                            "that format is copied as it is)"),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG quality"),
) -> None:
    """Write every split of CONFIG's dataset as shards and print the patterns as JSON."""
    from trainer.data.convert import convert

    err = Console(stderr=True)
    try:
        cfg = load_config(config, set_)
    except ConfigError as e:
        err.print(f"[red]invalid config[/red] {e.field}: {e.reason}")
        raise typer.Exit(2) from e
    if cfg.data.dataset == "webdataset":
        err.print("[red]data.dataset[/red]: already shards")
        raise typer.Exit(2)
    try:
        patterns = convert(cfg.data, out, per_shard, fmt, quality)
    except ValueError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from e
    json.dump({"data.dataset": "webdataset",
               **{f"data.{split}_shards": p for split, p in patterns.items()}},
              sys.stdout, indent=2)
    sys.stdout.write("\n")
