"""Submitting an ablation: the use case behind ``POST /experiments``, with no HTTP in it.

``plan`` parses, validates and expands a spec and keys its trials, writing nothing, so a rejected
spec (a ``SpecError``) leaves the store as it was and a dry run is just a plan. ``submit`` stores
the planned experiment and hands it to the executor, which creates the MLflow experiment and
parent run and submits the Ray job. A failed submission is not an error for the client: the
experiment is stored, and the reconciler submits it later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.execution import Executor, Reconciler
from service.settings import Settings
from service.paths import check_config_paths
from service.specs import AblationSpec, Expansion, SpecError, expand, parse_spec, spec_to_json
from service.store import ExperimentView, NewTrial, NewVariant, Store
from trainer.keys import trial_key  # light: no torch, no training loop

log = logging.getLogger(__name__)


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


def plan(body: bytes, settings: Settings) -> Plan:
    """Parse (JSON or YAML), validate and expand a spec within the configured limits.

    Raises ``SpecError`` naming each offending field; writes nothing."""
    spec = parse_spec(body)
    expansion = expand(spec, max_variants=settings.max_variants, max_trials=settings.max_trials)
    refuse_unconfined_paths(expansion, settings)
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


def submit(planned: Plan, store: Store, executor: Executor,
           reconciler: Reconciler | None = None) -> Submission:
    """Store the experiment (cached trials reused unless the spec says ``rerun``) and submit its
    job; with nothing to run, wake ``reconciler`` so the comparison is logged now."""
    spec = planned.spec
    exp = store.create_experiment(
        name=spec.name, description=spec.description,
        spec=spec_to_json(spec), design=spec.design,
        baseline=planned.expansion.baseline, primary_metric=spec.metrics.primary,
        variants=planned.variants, reuse_cached=not spec.rerun,
    )
    sid, submit_error = None, None
    try:
        sid = executor.submit(exp.id)
    except Exception as err:  # Ray or MLflow unreachable and the like: the reconciler retries
        submit_error = f"not submitted yet (the reconciler retries): {err}"
        log.warning("submit %s: %s", exp.id, err)
    exp = store.get_experiment(exp.id)
    if sid is None and submit_error is None and reconciler is not None:
        reconciler.wake()  # nothing to run (all cached): log its comparison now
    return Submission(experiment=exp, job_submission_id=sid, submit_error=submit_error)
