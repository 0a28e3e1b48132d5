"""The source of truth: experiments, their variants, trials and downstream
evaluations, in SQL (all of the service's SQL).

``models`` holds the ORM tables, ``engine`` the engines and Alembic migrations, ``queries`` the
``Store`` with every query and transition, ``views`` what the store returns. Callers import from
here; the trial states and their sets are defined once in ``service.states``.
"""

from service.states import (
    ACTIVE_EVALUATION_STATES,
    ACTIVE_STATES,
    RESULT_STATES,
    EvaluationState,
    TrialState,
)
from service.store.engine import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    alembic_config,
    make_engine,
    migrate,
)
from service.store.evaluations import Evaluations, EvaluationTarget, WantedEvaluation
from service.store.models import Base, Evaluation, Experiment, Trial, Variant
from service.store.queries import (
    KeyTaken,
    NewTrial,
    NewVariant,
    NotFound,
    Store,
    new_experiment_id,
)
from service.store.views import EvaluationView, ExperimentView, TrialView, VariantView

__all__ = [
    "ACTIVE_EVALUATION_STATES",
    "ACTIVE_STATES",
    "MIGRATIONS",
    "MIGRATION_LOCK_KEY",
    "RESULT_STATES",
    "Base",
    "Evaluation",
    "EvaluationState",
    "EvaluationTarget",
    "EvaluationView",
    "Evaluations",
    "Experiment",
    "ExperimentView",
    "KeyTaken",
    "NewTrial",
    "NewVariant",
    "NotFound",
    "Store",
    "Trial",
    "TrialState",
    "TrialView",
    "Variant",
    "VariantView",
    "WantedEvaluation",
    "alembic_config",
    "make_engine",
    "migrate",
    "new_experiment_id",
]
