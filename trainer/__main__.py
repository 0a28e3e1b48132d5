"""``python -m trainer CONFIG [--set k=v ...] [--seed N]``: the trainer alone, no service."""

import typer

from trainer.cli_train import train_command

if __name__ == "__main__":
    typer.run(train_command)
