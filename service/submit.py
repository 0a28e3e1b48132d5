"""Submitting an ablation: the use case behind ``POST /experiments``, with no HTTP in it.

``plan`` parses, validates and expands a spec and keys its trials, writing nothing, so a rejected
spec (a ``SpecError``) leaves the store as it was and a dry run is just a plan. ``submit`` stores
the planned experiment and hands it to the executor, which creates the MLflow experiment and
parent run and submits the Ray job. A failed submission is not an error for the client: the
experiment is stored, and the reconciler submits it later. With an idempotency key, a repeated
submission returns the experiment the first one stored (``replayed``) instead of a second one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillRunning
from dataclasses import dataclass

from service.execution import Executor, Reconciler
from service.paths import check_config_paths
from service.settings import Settings
from service.specs import AblationSpec, Expansion, SpecError, expand, parse_spec, spec_to_json
from service.store import ExperimentView, KeyTaken, NewTrial, NewVariant, Store
from trainer.keys import trial_key  # light: no torch, no training loop

log = logging.getLogger(__name__)

_SUBMITTER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="submit")
"""Where job submissions run, so a POST waits for one at most ``submit_timeout_s``: a frozen
MLflow server or Ray dashboard holds a submitter thread, never the client. Submitting is
idempotent (one lock, deterministic submission ids), so a late one never duplicates a job."""


@dataclass(frozen=True)
class Plan:
    """A validated spec, its expansion, and the variants with keyed trials the store will get."""

    spec: AblationSpec
    expansion: Expansion
    variants: list[NewVariant]


@dataclass(frozen=True)
class Submission:
    """A stored experiment and how its job submission went."""

    experiment: ExperimentView
    job_submission_id: str | None
    """None when there was nothing to run (every trial cached) or the submission failed."""
    submit_error: str | None
    """Why the job was not submitted yet (the reconciler retries); None if it was or need not be."""
    replayed: bool = False
    """True when an earlier submission with the same idempotency key stored ``experiment``."""


class KeyReused(ValueError):
    """The idempotency key already named another spec's experiment: the client reused a key."""

    def __init__(self, key: str, exp_id: str) -> None:
        super().__init__(f"this key already created experiment {exp_id} from a different spec; "
                         "send a new key for a new experiment")
        self.key, self.exp_id = key, exp_id


def new_variants(expansion: Expansion) -> list[NewVariant]:
    """The expansion's variants as the store takes them, each trial keyed by config and seed."""
    return [
        NewVariant(
            name=v.name, levels=v.levels, overrides=v.overrides,
            config=v.config.model_dump(mode="json"), config_hash=v.config.config_hash(),
            trials=[NewTrial(seed=s, trial_key=trial_key(v.config, s)) for s in expansion.seeds],
        )
        for v in expansion.variants
    ]


def plan(body: bytes, settings: Settings, *, as_json: bool = False) -> Plan:
    """Parse (JSON if ``as_json``, else YAML), validate and expand a spec within the configured
    limits: what a dry run shows and a POST stores, so both refuse exactly the same specs.

    Raises ``SpecError`` naming each offending field; writes nothing."""
    spec = parse_spec(body, as_json=as_json)
    expansion = expand(spec, max_variants=settings.max_variants, max_trials=settings.max_trials)
    refuse_unconfined_paths(expansion, settings)
    refuse_unsplittable_batches(expansion, spec.resources.workers)
    return Plan(spec=spec, expansion=expansion, variants=new_variants(expansion))


def refuse_unconfined_paths(expansion: Expansion, settings: Settings) -> None:
    """SpecError naming each variant's path that resolves outside the allowed roots."""
    errors: list[dict[str, str]] = []
    for v in expansion.variants:
        for refusal in check_config_paths(v.config, settings):
            errors.append({"field": f"variants[{v.name}].{refusal.field}",
                           "reason": refusal.reason})
    if errors:
        raise SpecError(errors)


def refuse_unsplittable_batches(expansion: Expansion, workers: int) -> None:
    """SpecError naming each variant whose batch does not split evenly over the data-parallel
    workers (each trains on ``data.batch_size / workers`` rows of every batch)."""
    errors = [{"field": f"variants[{v.name}].data.batch_size",
               "reason": f"{v.config.data.batch_size} does not split evenly over "
                         f"resources.workers = {workers}"}
              for v in expansion.variants if v.config.data.batch_size % workers]
    if errors:
        raise SpecError(errors)


def submit(planned: Plan, store: Store, executor: Executor,
           reconciler: Reconciler | None = None, *, idempotency_key: str | None = None
           ) -> Submission:
    """Store the experiment (cached trials reused unless the spec says ``rerun``) and submit its
    job; with nothing to run, wake ``reconciler`` so the comparison is logged now.

    An ``idempotency_key`` that already created an experiment returns that one, untouched, if
    the spec is the same, and raises ``KeyReused`` if not."""
    spec = planned.spec
    earlier = store.experiment_by_key(idempotency_key) if idempotency_key else None
    if earlier is not None:
        return _replay(earlier, planned, idempotency_key or "")
    try:
        exp = store.create_experiment(
            name=spec.name, description=spec.description,
            spec=spec_to_json(spec), design=spec.design,
            baseline=planned.expansion.baseline, primary_metric=spec.metrics.primary,
            variants=planned.variants, reuse_cached=not spec.rerun,
            idempotency_key=idempotency_key,
        )
    except KeyTaken:  # a concurrent POST with the key inserted first: answer with its experiment
        earlier = store.experiment_by_key(idempotency_key or "")
        if earlier is None:
            raise
        return _replay(earlier, planned, idempotency_key or "")
    sid, submit_error = submit_job(executor, exp.id)
    exp = store.get_experiment(exp.id)
    if sid is None and submit_error is None and reconciler is not None:
        reconciler.wake()  # nothing to run (all cached): log its comparison now
    return Submission(experiment=exp, job_submission_id=sid, submit_error=submit_error)

def submit_job(executor: Executor, exp_id: str) -> tuple[str | None, str | None]:
    """(submission id, why not yet): the experiment's job submitted, waiting at most
    ``submit_timeout_s``; a failure is left to the reconciler, never raised."""
    timeout = executor.settings.submit_timeout_s
    pending = _SUBMITTER.submit(executor.submit, exp_id)
    try:
        return pending.result(timeout=timeout), None
    except StillRunning:
        why = (f"still submitting after {timeout:g} s (MLflow or Ray is slow); it goes "
               "on in the background and the reconciler checks on it")
    except Exception as err:  # Ray or MLflow unreachable and the like: the reconciler retries
        why = f"not submitted yet (the reconciler retries): {err}"
    log.warning("submit %s: %s", exp_id, why)
    return None, why


def _replay(earlier: ExperimentView, planned: Plan, key: str) -> Submission:
    if not _same_spec(earlier.spec, planned.spec):
        raise KeyReused(key, earlier.id)
    return Submission(experiment=earlier, job_submission_id=earlier.job_submission_id,
                      submit_error=None, replayed=True)


def _same_spec(stored: dict[str, object], spec: AblationSpec) -> bool:
    """Same meaning, not same bytes: YAML or JSON, a seed count or its list, a default written
    out or left out all compare equal. A stored spec that the schema now refuses (a rule
    tightened since) is compared as it was stored."""
    try:
        then = AblationSpec.model_validate(stored)
    except ValueError:
        return stored == spec_to_json(spec)
    return then.model_dump(mode="json") == spec.model_dump(mode="json")
