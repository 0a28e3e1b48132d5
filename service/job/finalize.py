"""The end-of-experiment step: the comparison on the MLflow parent run, then that run ended.

Run by the experiment's job after its last trial and, for anything a job could not finish (a job
lost between its last trial and this step, an experiment whose trials were all cached so no job
ran), by the controller's reconciler. Every part is idempotent, so the two may overlap.
"""

from __future__ import annotations

import logging

from service.states import ACTIVE_EVALUATION_STATES, ACTIVE_STATES
from service.tracking.parent_runs import ParentRuns

log = logging.getLogger(__name__)


def finalize(parent_runs: ParentRuns, exp_id: str) -> bool:
    """Log the comparison and end the parent run of an experiment with no active trial left.

    An experiment whose trials were all cached gets its MLflow experiment and parent run here,
    so every experiment has a parent run holding its comparison. Returns False when there is
    nothing to do (already finalized, cancelled, or trials or evaluations still active).
    """
    store = parent_runs.store
    exp = store.get_experiment(exp_id)
    if (exp.finalized_at is not None or exp.cancelled_at is not None
            or any(t.state in ACTIVE_STATES for t in exp.trials)
            or any(e.state in ACTIVE_EVALUATION_STATES
                   for e in store.evaluations.for_experiment(exp_id))):
        return False
    if not exp.mlflow_parent_run_id:
        parent_runs.prepare(exp)
    # before the parent ends, so the finished run already holds its table
    parent_runs.log_comparison(exp_id)
    parent_runs.end_parent(store.get_experiment(exp_id))
    store.mark_finalized(exp_id)
    log.info("experiment %s: comparison logged, parent run ended", exp_id)
    return True
