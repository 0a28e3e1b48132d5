"""The source of truth: experiments, their variants and trials, in SQL (all of the service's SQL).

``models`` holds the ORM tables, ``engine`` the engines and Alembic migrations, ``queries`` the
``Store`` with every query and transition, ``views`` what the store returns. Callers import from
here; the trial states and their sets are defined once in ``service.states``.
"""

from service.states import ACTIVE_STATES, RESULT_STATES, TrialState
from service.store.engine import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    alembic_config,
    make_engine,
    migrate,
)
from service.store.models import Base, Experiment, Trial, Variant
from service.store.queries import (
    KeyTaken,
    NewTrial,
    NewVariant,
    NotFound,
    Store,
    new_experiment_id,
)
from service.store.views import ExperimentView, TrialView, VariantView

__all__ = [
    "ACTIVE_STATES",
    "MIGRATIONS",
    "MIGRATION_LOCK_KEY",
    "RESULT_STATES",
    "Base",
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
    "alembic_config",
    "make_engine",
    "migrate",
    "new_experiment_id",
]
