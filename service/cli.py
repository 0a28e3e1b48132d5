"""``ablate serve | submit | status | watch | evaluate | compare | demo`` (and ``train`` and
``data shard``, from the trainer).

The CLI is a thin HTTP client of the controller (``--url`` / ``ABLATE_CONTROLLER_URL``), except
``serve`` and ``demo``, which start the embedded stack on loopback and stop it cleanly on Ctrl-C
or SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from service.settings import Settings
from service.states import RESULT_STATES, TERMINAL_STATUSES
from trainer.cli_data import data_app
from trainer.cli_train import train_command

app = typer.Typer(
    name="ablate", no_args_is_help=True, add_completion=False,
    help="Ablation service for vision-language pretraining.",
)
console = Console()
err_console = Console(stderr=True)

QUICK_SPEC = Path(__file__).resolve().parent.parent / "experiments" / "quick.yaml"


# ---- helpers ---------------------------------------------------------------------------------

def _settings(**given: Any) -> Settings:
    return Settings(**{k: v for k, v in given.items() if v is not None})


def _client(url: str | None) -> httpx.Client:
    s = Settings()
    headers = {}
    if s.auth_token is not None:
        headers["authorization"] = f"Bearer {s.auth_token.get_secret_value()}"
    return httpx.Client(base_url=url or s.controller_url, timeout=120.0, headers=headers)


def _check(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        if isinstance(detail, list):
            for d in detail:
                err_console.print(f"[red]{d.get('field')}[/red]: {d.get('reason')}")
        else:
            err_console.print(f"[red]{detail}[/red]")
        raise typer.Exit(1)
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()
    return r.text


def _status_table(exp: dict[str, Any]) -> Table:
    table = Table(title=f"{exp['name']} [{exp['id']}]: {exp['status']}")
    for col in ("variant", "seed", "state", "step", "attempts", "mean_recall", "MLflow run"):
        table.add_column(col)
    for v in exp["variants"]:
        for t in v["trials"]:
            recall = t["metrics"].get("mean_recall")
            table.add_row(
                v["name"], str(t["seed"]), t["state"], f"{t['step']}/{t['total_steps']}",
                str(t["attempts"]), "-" if recall is None else f"{recall:.2f}",
                t["mlflow_url"] or "-",
            )
    return table


def watch_experiment(client: httpx.Client, exp_id: str, interval: float = 1.0,
                     timeout: float | None = None) -> dict[str, Any]:
    """Rich progress bars per trial until the experiment is done; returns its last state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tasks: dict[int, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"), console=console,
    ) as progress:
        while True:
            exp = _check(client.get(f"/experiments/{exp_id}"))
            for v in exp["variants"]:
                for t in v["trials"]:
                    total = t["total_steps"] or 1
                    done = total if t["state"] in RESULT_STATES else t["step"]
                    if t["id"] not in tasks:
                        tasks[t["id"]] = progress.add_task(
                            f"{v['name']} seed={t['seed']}", total=total, state=t["state"]
                        )
                    progress.update(tasks[t["id"]], total=total, completed=done,
                                    state=t["state"])
            if exp["status"] in TERMINAL_STATUSES:
                return exp
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{exp_id} still {exp['status']} after {timeout}s")
            time.sleep(interval)


# ---- commands --------------------------------------------------------------------------------

@app.command()
def serve(
    host: str | None = typer.Option(None, help="bind address [ABLATE_HOST]"),
    port: int | None = typer.Option(None, help="controller port [ABLATE_PORT]"),
    mlflow_port: int | None = typer.Option(None, help="MLflow port [ABLATE_MLFLOW_PORT]"),
    ray_dashboard_port: int | None = typer.Option(
        None, help="Ray dashboard port [ABLATE_RAY_DASHBOARD_PORT]"
    ),
    data_dir: Path | None = typer.Option(None, help="data dir [ABLATE_DATA_DIR]"),
    start_ray: bool = typer.Option(True, help="start a local Ray head (else use ray_address)"),
    start_mlflow: bool = typer.Option(True, help="start an MLflow server (else use its URI)"),
    num_cpus: int | None = typer.Option(None, help="CPUs the local Ray head offers"),
) -> None:
    """Start the controller, a local Ray head and an MLflow server; restart a crashed MLflow
    or controller with backoff; stop all on Ctrl-C or SIGTERM."""
    from service.stack.embedded import Stack
    from service.stack.supervise import Supervisor

    settings = _settings(host=host, port=port, mlflow_port=mlflow_port,
                         ray_dashboard_port=ray_dashboard_port, data_dir=data_dir)
    stack = Stack(settings, start_ray=start_ray, start_mlflow=start_mlflow, num_cpus=num_cpus)
    stopping: list[int] = []

    def _stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    console.print("starting Ray, MLflow and the controller ...")
    try:
        stack.start()
        for name, url in stack.urls().items():
            console.print(f"  {name:<10} {url}")
        console.print(f"  API docs   {settings.controller_url}/docs")
        console.print("Ctrl-C stops everything.")
        supervisor = Supervisor(stack, say=lambda line: err_console.print(f"[yellow]{line}"))
        while not stopping:
            reason = supervisor.check()
            if reason is not None:
                err_console.print(f"[red]{reason}; stopping the stack[/red]")
                break
            time.sleep(0.25)
    finally:
        console.print("stopping ...")
        stack.stop()
        console.print("stopped.")


@app.command()
def submit(
    file: Path = typer.Argument(..., exists=True, readable=True, help="spec (YAML or JSON)"),
    dry_run: bool = typer.Option(False, help="expand and validate only"),
    url: str | None = typer.Option(None, help="controller URL [ABLATE_CONTROLLER_URL]"),
    idempotency_key: str | None = typer.Option(
        None, help="submitting again with this key returns the first experiment, not a new one"),
    delta: float | None = typer.Option(
        None, help="dry run: the difference to detect (seeds it needs; an adaptive plan's "
        "expected trials)"),
    sd: float | None = typer.Option(None, help="dry run: the spread of a difference over seeds"),
    prior: str | None = typer.Option(None, help="dry run: an experiment whose spread to use"),
) -> None:
    """Submit an ablation spec; prints the experiment id (a dry run: the plan as JSON)."""
    media = "application/json" if file.suffix.lower() == ".json" else "application/yaml"
    headers = {"content-type": media}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    params: dict[str, str | float | bool] = {"dry_run": dry_run}
    params.update({k: v for k, v in (("delta", delta), ("sd", sd), ("prior", prior))
                   if v is not None})
    with _client(url) as client:
        out = _check(client.post(
            "/experiments", params=params, content=file.read_bytes(), headers=headers,
        ))
    if dry_run:
        console.print_json(json.dumps(out))
        return
    console.print(f"[bold]{out['id']}[/bold]: {out['trials']} trials "
                  f"({out['cached']} cached) over {len(out['variants'])} variants: "
                  + ", ".join(out["variants"]))
    if out.get("submit_error"):
        err_console.print(f"[yellow]{out['submit_error']}[/yellow]")


@app.command()
def status(exp_id: str, url: str | None = typer.Option(None)) -> None:
    """One experiment: state, progress and MLflow links per trial."""
    with _client(url) as client:
        console.print(_status_table(_check(client.get(f"/experiments/{exp_id}"))))


@app.command()
def watch(exp_id: str, url: str | None = typer.Option(None),
          interval: float = typer.Option(1.0, help="seconds between polls")) -> None:
    """Progress bars per trial until the experiment is done."""
    with _client(url) as client:
        exp = watch_experiment(client, exp_id, interval)
    console.print(_status_table(exp))


@app.command()
def evaluate(
    exp_id: str,
    task: list[str] = typer.Option(..., "--task", "-t", help="a downstream task (repeatable): "
                                   "vqa, nlvr, ve, grounding, minimal_pairs"),
    set_: list[str] = typer.Option([], "--set", help="eval.downstream.<task>.*=value "
                                   "(repeatable), e.g. eval.downstream.vqa.finetune.steps=200"),
    url: str | None = typer.Option(None),
) -> None:
    """Evaluate a finished experiment on more downstream tasks; only new evaluations run."""
    from trainer.config.overrides import parse_override

    try:
        settings = dict(parse_override(item) for item in set_)
    except ValueError as err:
        err_console.print(f"[red]--set[/red]: {err}")
        raise typer.Exit(2) from None
    with _client(url) as client:
        out = _check(client.post(f"/experiments/{exp_id}/evaluate",
                                 json={"tasks": task, "settings": settings}))
    states = ", ".join(f"{n} {s}" for s, n in out["evaluations"].items() if n)
    console.print(f"[bold]{out['id']}[/bold]: {out['added']} new evaluations "
                  f"(tasks now {', '.join(out['tasks'])}; {states or 'none stored'})")
    if out.get("submit_error"):
        err_console.print(f"[yellow]{out['submit_error']}[/yellow]")


COMPARE_FORMATS = ("json", "markdown", "csv", "latex", "html", "png")


@app.command()
def compare(
    exp_id: str,
    format: str = typer.Option(
        "markdown", "--format", "-f", help="json | markdown | csv | latex | html | png"
    ),
    baseline: str | None = typer.Option(None, help="variant to compare against"),
    alpha: float = typer.Option(0.05, help="significance level (CIs at 1 - alpha)"),
    correction: str = typer.Option("holm", help="holm, bonferroni, fdr_bh, ... or none"),
    ci: str = typer.Option("t", help="t or bootstrap"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="write here (png default: <id>-compare.png)"
    ),
    url: str | None = typer.Option(None),
) -> None:
    """The comparison over seeds: means with CIs, deltas vs the baseline, corrected p values."""
    if format not in COMPARE_FORMATS:
        err_console.print(f"[red]format[/red]: expected one of {', '.join(COMPARE_FORMATS)}")
        raise typer.Exit(2)
    params: dict[str, Any] = {"format": format, "alpha": alpha, "correction": correction,
                              "ci": ci}
    if baseline is not None:
        params["baseline"] = baseline
    with _client(url) as client:
        r = client.get(f"/experiments/{exp_id}/compare", params=params)
    if r.status_code >= 400:
        _check(r)  # prints the field errors and exits
    if format == "png" and out is None:
        out = Path(f"{exp_id}-compare.png")  # never PNG bytes on a terminal
    if out is not None:
        out.write_bytes(r.content)
        err_console.print(f"wrote {out} ({len(r.content)} bytes)")
    elif format == "json":
        console.print_json(r.text)
    else:
        console.print(r.text, markup=False, highlight=False, soft_wrap=True)


@app.command()
def demo(
    spec: Path = typer.Option(QUICK_SPEC, help="spec to run"),
    timeout: float = typer.Option(900.0, help="give up watching after this many seconds"),
) -> None:
    """Start the stack, run ``experiments/quick.yaml``, print the comparison, stop the stack
    (``DEMO_KEEP=1`` keeps it running for browsing MLflow until Ctrl-C)."""
    from service.stack.embedded import Stack, free_port, port_in_use

    base = Settings()
    ports = {}
    for key in ("port", "mlflow_port", "ray_dashboard_port"):
        wanted = getattr(base, key)
        ports[key] = free_port() if port_in_use(wanted, base.host) else wanted
    settings = _settings(**ports)
    stack = Stack(settings)
    keep = os.environ.get("DEMO_KEEP", "") not in ("", "0")
    final_status = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    console.print("starting Ray, MLflow and the controller ...")
    try:
        stack.start()
        for name, url in stack.urls().items():
            console.print(f"  {name:<10} {url}")
        with _client(settings.controller_url) as client:
            out = _check(client.post("/experiments", content=spec.read_bytes(),
                                     headers={"content-type": "application/yaml"}))
            console.print(f"submitted [bold]{out['id']}[/bold]: {out['trials']} trials "
                          f"({out['cached']} cached)")
            exp = watch_experiment(client, out["id"], timeout=timeout)
            final_status = exp["status"]
            console.print(_status_table(exp))
            table = _check(client.get(f"/experiments/{out['id']}/compare",
                                      params={"format": "markdown"}))
            console.print(table, markup=False, highlight=False, soft_wrap=True)
        where = exp.get("mlflow_url") or stack.urls()["mlflow"]
        console.print(f"Browse the runs in MLflow: {where}")
        if keep:
            console.print("DEMO_KEEP=1: the stack stays up; Ctrl-C stops it.")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping ...")
        stack.stop()
    if final_status != "finished":
        raise typer.Exit(1)


# ---- ablate train --------------------------------------------------------------------------
# The trainer's single-trial command: usable without the service running.
app.command("train")(train_command)
app.add_typer(data_app, name="data")  # ablate data shard


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
