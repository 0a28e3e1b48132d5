"""Trials added to a stored experiment: the seeds of an adaptive experiment's next look.

Separate from ``queries`` (which inserts a whole experiment at once) but building trial rows the
same way (``trial_row``): a seed whose trial key already FINISHED elsewhere is reused as
``cached``. The unique index on (variant_id, seed) (migration 0006) makes adding idempotent and
race-safe: a seed that exists is left alone, and of two concurrent adds one inserts.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.inputs import NewTrial
from service.store.models import Experiment, Trial, TrialState, Variant, now


def trial_row(exp: Experiment, var: Variant, new: NewTrial, done: dict[str, Trial]) -> Trial:
    """A pending trial, or a ``cached`` one copying the finished trial with the same key."""
    trial = Trial(experiment=exp, variant=var, seed=new.seed, trial_key=new.trial_key,
                  state=TrialState.PENDING, attempts=0, step=0, total_steps=0, metrics={})
    src = done.get(new.trial_key)
    if src is not None:
        trial.state = TrialState.CACHED
        trial.cached_from = src.id
        trial.metrics = dict(src.metrics or {})
        trial.history = src.history
        trial.fingerprints = src.fingerprints
        trial.mlflow_run_id = src.mlflow_run_id
        trial.mlflow_experiment_id = src.mlflow_experiment_id
        trial.step = trial.total_steps = src.total_steps
        trial.finished_at = now()
    return trial


def finished_by_key(s: Session, keys: list[str]) -> dict[str, Trial]:
    """The latest FINISHED trial of each key (any experiment): what a new trial may reuse."""
    if not keys:
        return {}
    rows = s.scalars(select(Trial)
                     .where(Trial.trial_key.in_(set(keys)), Trial.state == TrialState.FINISHED)
                     .order_by(Trial.id))
    return {t.trial_key: t for t in rows}


def add_trials(session: Session, exp_id: str, wanted: dict[str, list[NewTrial]],
               reuse_cached: bool) -> int:
    """Insert the trials of ``wanted`` (variant name -> trials) that the experiment lacks;
    returns how many were inserted. Raises ``KeyError`` for a variant it does not have."""
    exp = session.get(Experiment, exp_id)
    if exp is None:
        raise KeyError(exp_id)
    variants = {v.name: v for v in session.scalars(
        select(Variant).where(Variant.experiment_id == exp_id))}
    missing = set(wanted) - set(variants)
    if missing:
        raise KeyError(f"no variants {sorted(missing)} in {exp_id}")
    have = {(vid, seed) for vid, seed in session.execute(
        select(Trial.variant_id, Trial.seed).where(Trial.experiment_id == exp_id))}
    new = [(variants[name], t) for name, trials in wanted.items() for t in trials
           if (variants[name].id, t.seed) not in have]
    done = finished_by_key(session, [t.trial_key for _, t in new]) if reuse_cached else {}
    with session.no_autoflush:  # a cached row reads its source's deferred history
        for var, t in new:
            session.add(trial_row(exp, var, t, done))
    session.flush()
    return len(new)
