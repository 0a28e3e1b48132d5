"""The controller's side of Ray: submit an experiment as a Ray Job, cancel it, reconcile.

One Ray Job per experiment runs ``service.job.supervisor`` (a Ray Tune run over the experiment's
runnable trials). The job lives in Ray, not in the controller, so killing the controller does not
stop training; on restart :meth:`Executor.reconcile` compares the store with Ray's jobs and with
MLflow and resubmits whatever lost its job. Submission ids are ``<experiment id>`` and then
``<experiment id>-r<N>``, so submitting is idempotent: a live job is never submitted twice.

The MLflow experiment and its parent run are created (``service.tracking.parent_runs``) before
the job is submitted, so no trial ever creates them. The job's runtime env carries no secret (Ray
shows it on its dashboard): the database URL goes in a private file
(``service.stack.secret_files``), the API token nowhere; the Jobs API gets the Ray cluster's token
when it has one.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

from service.job.finalize import finalize
from service.job.looks import add_next_look
from service.settings import Settings
from service.stack.secret_files import ray_auth_headers, write_job_secrets
from service.store import Store
from service.tracking.parent_runs import ParentRuns

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class RayUnavailable(RuntimeError):
    """Ray's dashboard (the Jobs API) cannot be reached; nothing was submitted or stopped."""


def bound_mlflow_requests(settings: Settings) -> None:
    """Short MLflow HTTP timeouts and few retries for this process (the controller): MLflow's
    defaults (120 s, 7 retries with backoff: minutes) would let a frozen MLflow server hold a
    request thread that long. Variables already set in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.mlflow_request_timeout_s))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.mlflow_request_retries))


class Executor:
    """Submits, cancels and reconciles experiments; safe to call from several threads."""

    def __init__(self, settings: Settings, store: Store) -> None:
        bound_mlflow_requests(settings)
        self.settings = settings
        self.store = store
        self.parent_runs = ParentRuns(settings, store)
        self._jobs: JobSubmissionClient | None = None
        self._lock = threading.RLock()

    # ---- Ray Jobs ---------------------------------------------------------------------------
    @property
    def jobs(self) -> JobSubmissionClient:
        if self._jobs is None:
            try:
                self._jobs = JobSubmissionClient(self.settings.ray_address,
                                                 headers=ray_auth_headers(self.settings))
            except Exception as err:  # the client checks the dashboard on construction
                raise RayUnavailable(f"{self.settings.ray_address}: {err}") from err
        return self._jobs

    def job_status(self, submission_id: str) -> JobStatus | None:
        """The job's status; None when Ray has no such job (lost with a restarted head)."""
        try:
            return self.jobs.get_job_status(submission_id)
        except RayUnavailable:
            raise
        except Exception as err:
            text = str(err).lower()
            if "does not exist" in text or "404" in text or "not found" in text:
                return None
            raise RayUnavailable(str(err)) from err

    def _entrypoint(self, exp_id: str) -> str:
        return f"{shlex.quote(sys.executable)} -m service.job.supervisor --experiment {exp_id}"

    def _runtime_env(self) -> dict[str, object]:
        """What the job's driver and workers see: settings without secrets, plus the path of
        the private file that holds the ones they need."""
        env = self.settings.job_env(write_job_secrets(self.settings))
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return {"env_vars": env}

    # ---- submit / cancel --------------------------------------------------------------------
    def submit(self, exp_id: str, resubmit: bool = False) -> str | None:
        """Make sure a job runs this experiment's runnable trials; returns its submission id
        (``resubmit``: the reconciler's, for a lost job, counted against ``max_job_resubmits``).

        No-op (returning the live job's id) while a job for it is pending or running; None when
        nothing is left to run (every trial cached or final and no downstream evaluation
        pending) or the experiment was cancelled.
        """
        with self._lock:
            exp = self.store.get_experiment(exp_id)
            if exp.cancelled_at is not None or not (self.store.runnable_trials(exp_id)
                                                    or self.store.evaluations.runnable(exp_id)):
                return None
            jobs = self.jobs  # Ray unreachable fails fast here, before any MLflow call
            if exp.job_submission_id:
                status = self.job_status(exp.job_submission_id)
                if status is not None and not status.is_terminal():
                    return exp.job_submission_id
            self.parent_runs.prepare(exp)
            n = exp.job_submissions
            sid = exp_id if n == 0 else f"{exp_id}-r{n}"
            try:
                jobs.submit_job(
                    entrypoint=self._entrypoint(exp_id),
                    submission_id=sid,
                    runtime_env=self._runtime_env(),
                    metadata={"experiment_id": exp_id, "name": exp.name[:100]},
                )
            except RayUnavailable:
                raise
            except Exception as err:
                if "already exists" not in str(err):
                    raise RayUnavailable(str(err)) from err
            self.store.record_job_submission(exp_id, sid, resubmit)
            log.info("submitted %s as Ray job %s", exp_id, sid)
            return sid

    def cancel(self, exp_id: str, wait_s: float = 30.0) -> int:
        """Stop the experiment's job, mark its unfinished trials cancelled, end its MLflow runs."""
        self.store.mark_cancel_requested(exp_id)
        with self._lock:
            exp = self.store.get_experiment(exp_id)
            if exp.job_submission_id:
                try:
                    self.jobs.stop_job(exp.job_submission_id)
                    deadline = time.monotonic() + wait_s
                    while time.monotonic() < deadline:
                        status = self.job_status(exp.job_submission_id)
                        if status is None or status.is_terminal():
                            break
                        time.sleep(0.5)
                except RayUnavailable:
                    log.warning("cancel %s: Ray unreachable; the job may still run", exp_id)
                except Exception as err:  # stopping a job that already ended
                    log.info("stop_job %s: %s", exp.job_submission_id, err)
            n = self.store.cancel_trials(exp_id)
            self.store.evaluations.fail_active(exp_id, "cancelled")
            exp = self.store.get_experiment(exp_id)
            self.parent_runs.end_orphans(exp, status="KILLED", include_parent=True)
            return n

    # ---- reconciliation ---------------------------------------------------------------------
    def reconcile(self) -> dict[str, str]:
        """Resubmit experiments whose job is gone; end MLflow runs nobody will end.

        For each experiment with pending/running/retrying trials or pending/running downstream
        evaluations: a live job -> nothing to do; a
        cancel that was interrupted -> finish it; no live job -> end its orphaned RUNNING MLflow
        runs (their trials resume them by trial key) and resubmit, at most ``max_job_resubmits``
        times, after which the remaining trials fail. Each experiment with no active trial left
        and no live job gets its end-of-experiment step (comparison on the parent run, parent
        ended) if it has not had it. Returns what was done, per experiment.
        """
        actions: dict[str, str] = {}
        active = {*self.store.experiments_with_active_trials(),
                  *self.store.evaluations.experiments_with_active()}
        for exp_id in sorted(active):
            with self._lock:
                exp = self.store.get_experiment(exp_id)
                if exp.cancelled_at is not None:
                    self.store.cancel_trials(exp_id)
                    self.store.evaluations.fail_active(exp_id, "cancelled")
                    self.parent_runs.end_orphans(exp, include_parent=True)
                    actions[exp_id] = "cancelled"
                    continue
                if exp.job_submission_id:
                    status = self.job_status(exp.job_submission_id)
                    if status is not None and not status.is_terminal():
                        actions[exp_id] = f"job {exp.job_submission_id} {status.value}"
                        continue
                ended = self.parent_runs.end_orphans(exp, status="FAILED")
                if (exp.job_submission_id
                        and exp.job_resubmits >= self.settings.max_job_resubmits):
                    lost = (f"its Ray job was lost {exp.job_resubmits + 1} times "
                            f"(resubmitted {exp.job_resubmits}); giving up")
                    self.store.fail_active(exp_id, lost)
                    self.store.evaluations.fail_active(exp_id, lost)
                    self.parent_runs.end_parent(self.store.get_experiment(exp_id))
                    actions[exp_id] = "failed: too many lost jobs"
                    continue
                sid = self.submit(exp_id, resubmit=exp.job_submission_id is not None)
                actions[exp_id] = f"resubmitted as {sid} ({ended} orphaned runs ended)"
                log.info("reconcile %s: %s", exp_id, actions[exp_id])
        for exp_id in self.store.experiments_to_finalize():
            action = self._finalize_unless_job_live(exp_id)
            if action:
                actions[exp_id] = action
        return actions

    def _finalize_unless_job_live(self, exp_id: str) -> str | None:
        """The end-of-experiment step for a done experiment, unless its job is still up (the
        job does it itself). One experiment's failure never blocks the others."""
        exp = self.store.get_experiment(exp_id)
        try:
            if exp.job_submission_id:
                status = self.job_status(exp.job_submission_id)
                if status is not None and not status.is_terminal():
                    return None
            added = add_next_look(self.store, exp_id)  # adaptive seeds: a job lost between looks
            if added:
                return f"next look: {added} trials added, submitted as {self.submit(exp_id)}"
            return "finalized" if finalize(self.parent_runs, exp_id) else None
        except Exception as err:  # MLflow or Ray down: the next pass tries again
            log.warning("finalize %s: %s: %s", exp_id, type(err).__name__, err)
            return f"finalize failed: {err}"


class Reconciler:
    """Runs :meth:`Executor.reconcile` at startup and then every ``interval_s`` in a thread."""

    def __init__(self, executor: Executor, interval_s: float) -> None:
        self.executor = executor
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
        self.last: dict[str, str] | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        """Run a pass now (e.g. an experiment that was all cached wants its parent run)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.last = self.executor.reconcile()
                self.last_error = None
            except Exception as err:  # Ray or MLflow not up yet: try again next period
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("reconcile failed: %s", self.last_error)
            if self.interval_s <= 0 and self.last is not None:
                return
            self._wake.wait(self.interval_s if self.interval_s > 0 else 2.0)
