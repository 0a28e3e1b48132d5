"""What ``analyze`` reads and returns: pydantic models (the JSON a report is made from), the
literal types they use, and how a metric's name tells its direction."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from service.analysis.errors import AnalysisError

RESULT_STATUSES = frozenset({"finished", "cached"})
"""Trial statuses whose metrics count (a "done" trial); not the experiment's terminal states."""

Direction = Literal["higher", "lower"]
DesignKind = Literal["factorial", "leave_one_out", "add_one_in", "explicit"]
Verdict = Literal["better", "worse", "no detectable difference", "insufficient data"]
TestKind = Literal["paired_t", "welch_t"]

EFFECT_SIZE_CI_METHOD = (
    "normal approximation: se(d_z) = sqrt(1/n + d_z^2/(2n)); "
    "se(g) = sqrt((n1+n2)/(n1*n2) + g^2/(2(n1+n2)))"
)
BOOTSTRAP_METHODS = ("percentile", "BCa", "basic")

# --------------------------------------------------------------------------- input


class TrialRecord(BaseModel):
    """One (variant, seed) run as the service knows it."""

    variant: str
    seed: int
    status: str
    metrics: dict[str, float] = Field(default_factory=dict)
    # metric -> [(step, value)] learning curve; may be empty
    history: dict[str, list[tuple[int, float]]] = Field(default_factory=dict)
    mlflow_url: str | None = None
    fingerprints: dict[str, str] | None = None
    """What the trial's seed controlled (data order, initial weights, random streams), as
    short hashes; None when the trial did not record them."""

    @property
    def done(self) -> bool:
        """Whether this trial's metrics count (see ``RESULT_STATUSES``)."""
        return self.status in RESULT_STATUSES


class VariantView(BaseModel):
    """A variant as the spec lists it; ``factor_levels`` e.g. ``{"ITC": "on"}``."""

    name: str
    factor_levels: dict[str, str] = Field(default_factory=dict)


class ExperimentView(BaseModel):
    """Everything ``analyze`` needs: the spec's shape plus the trials so far."""

    name: str
    design: DesignKind
    variants: list[VariantView]  # spec order; add_one_in relies on it
    baseline: str
    primary_metric: str
    metrics: list[str] = Field(default_factory=list)
    trials: list[TrialRecord] = Field(default_factory=list)
    tasks: dict[str, list[str]] = Field(default_factory=dict)
    """Downstream task -> its metrics among ``metrics`` (task order): one block each."""
    task_primary: dict[str, str] = Field(default_factory=dict)
    """Downstream task -> the metric its Holm family and the Meta-Sum use."""
    directions: dict[str, Direction] = Field(default_factory=dict)
    """Metric directions the caller knows (``analyze``'s ``directions`` win over these)."""


# -------------------------------------------------------------------------- output


class Interval(BaseModel):
    """A confidence interval; ``method`` says how it was made, so a report can say so."""

    low: float
    high: float
    level: float
    method: str  # "t", "welch_t", "paired_t", "bootstrap-percentile", "normal-approx", ...


class Cell(BaseModel):
    """Summary of one metric for one variant over its done seeds."""

    metric: str
    n: int  # done seeds with a finite value for this metric
    n_unfinished: int  # seeds of this variant that are not done (yet)
    n_missing: int = 0  # done seeds that did not report this metric
    mean: float | None = None
    std: float | None = None  # ddof=1; None when n < 2
    ci: Interval | None = None  # None when n < 2: no interval is possible
    seeds: list[int] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)  # aligned with seeds
    note: str | None = None


class EffectSize(BaseModel):
    """Standardised delta: Cohen's d_z for a paired test, Hedges' g for Welch."""

    kind: Literal["cohen_dz", "hedges_g"]
    value: float
    ci: Interval | None = None


class Comparison(BaseModel):
    """variant - reference for one metric."""

    variant: str
    reference: str
    metric: str
    direction: Direction
    test: TestKind | None = None
    n_variant: int
    n_reference: int
    delta: float | None = None
    ci: Interval | None = None
    df: float | None = None
    statistic: float | None = None
    p: float | None = None
    p_corrected: float | None = None
    effect_size: EffectSize | None = None
    verdict: Verdict = "insufficient data"
    note: str | None = None
    pairing: str | None = None
    """Whether the arms' trials of each seed shared their randomness: "verified", "not
    verified: ..." (a trial recorded no fingerprints) or "broken: ..." (then Welch)."""


class TrialLink(BaseModel):
    """One attempt of a variant, linked to its MLflow run, so a report can point at it."""

    seed: int
    status: str
    mlflow_url: str | None = None


class VariantResult(BaseModel):
    """Everything about one variant: per-metric summaries and its comparisons."""

    name: str
    factor_levels: dict[str, str] = Field(default_factory=dict)
    is_baseline: bool = False
    n_done: int = 0  # distinct done seeds
    n_unfinished: int = 0  # distinct seeds without a done trial
    cells: dict[str, Cell] = Field(default_factory=dict)  # metric -> summary
    vs_baseline: dict[str, Comparison] = Field(default_factory=dict)  # empty for baseline
    vs_previous: dict[str, Comparison] = Field(default_factory=dict)  # add_one_in only
    trials: list[TrialLink] = Field(default_factory=list)


class Curve(BaseModel):
    """Learning curve of one metric for one variant, summarised over seeds per step."""

    variant: str
    metric: str
    steps: list[int]
    mean: list[float]
    std: list[float | None]  # None where fewer than 2 seeds reported that step
    n: list[int]


class FactorEffect(BaseModel):
    """One ANOVA term of a factorial design (main effect or interaction)."""

    metric: str
    term: str  # "ITC" or "ITC x HN"
    factors: list[str]
    kind: Literal["main", "interaction"]
    contrast: str | None = None  # what estimate means, e.g. "ITC: on - off"
    estimate: float | None = None
    ci: Interval | None = None
    F: float | None = None
    df_num: float | None = None
    df_den: float | None = None
    p: float | None = None
    partial_eta_sq: float | None = None
    note: str | None = None


class ArmCost(BaseModel):
    """Mean cost per done trial of one variant; ratios are to the baseline's means."""

    variant: str
    n: int
    samples: float | None = None
    flops: float | None = None
    train_s: float | None = None
    flops_ratio: float | None = None
    train_s_ratio: float | None = None
    finetune_samples: float | None = None
    """Downstream fine-tuning: the samples (steps x batch) of the tasks evaluated."""
    finetune_flops: float | None = None
    """Their training FLOPs (forward and backward; selection and test passes excluded)."""
    finetune_flops_ratio: float | None = None
    """``finetune_flops`` over this arm's own pretraining FLOPs (``flops``)."""
    finetune_s: float | None = None
    """Downstream evaluation wall time (every task evaluated: fine-tune, selection, test)."""
    finetune_s_ratio: float | None = None
    """``finetune_s`` over this arm's own pretraining time (``train_s``)."""


class TaskBlock(BaseModel):
    """One downstream task's column block: its metrics and the one its family tests."""

    task: str
    metrics: list[str]
    primary: str


class FamilyTest(BaseModel):
    """One member of the downstream family: a variant vs the baseline on a task's primary
    metric, its raw paired (or Welch) p and its p Holm-adjusted over the whole family."""

    variant: str
    task: str
    metric: str
    delta: float | None = None
    p: float | None = None
    p_family: float | None = None
    verdict: Verdict = "insufficient data"


class Downstream(BaseModel):
    """The downstream tasks' section of a comparison."""

    tasks: list[TaskBlock]
    meta_sum: str | None = None
    """The combined score's metric (sum of the tasks' primary metrics per trial, UNITER's
    Meta-Sum), when two or more tasks were evaluated."""
    family_correction: str = "holm"
    family: list[FamilyTest] = Field(default_factory=list)
    """Variants x tasks' primary metrics, one Holm family (in variant, then task order)."""


class SequentialLook(BaseModel):
    seeds: int
    delta: float
    se: float
    t: float
    bound: float


class SequentialComparison(BaseModel):
    """An adaptive experiment's comparison (variant - baseline, primary metric, paired by
    seed): its decision under the group-sequential procedure and why."""

    variant: str
    decision: Literal["better", "worse", "no_effect", "futile", "continue", "undecided"]
    reason: str
    seeds: int
    looks_taken: int
    level: float
    """Holm's level the comparison was last tested at (alpha / comparisons not yet shown)."""
    spending: str
    bound: float
    """|t| at or past this decides, at the last look taken."""
    interval: tuple[float | None, float | None]
    """Repeated confidence interval: valid however many looks were taken."""
    seeds_needed: int | None = None
    """Not decided: seeds a fixed paired design needs for 80% power at the observed effect."""
    looks: list[SequentialLook] = Field(default_factory=list)


class Sequential(BaseModel):
    initial: int
    max: int
    step: int
    alpha: float
    spending: str
    min_effect: float | None
    planned_looks: list[int]
    looks_taken: int
    comparisons: list[SequentialComparison] = Field(default_factory=list)


class Analysis(BaseModel):
    """Result of ``analyze``; JSON-serialisable via ``model_dump(mode="json")``."""

    schema_version: int = 1
    experiment: str
    design: DesignKind
    baseline: str
    primary_metric: str
    metrics: list[str]
    directions: dict[str, Direction]
    alpha: float
    confidence: float
    correction: str
    ci_method: Literal["t", "bootstrap"]
    bootstrap_method: str | None = None
    n_boot: int | None = None
    effect_size_ci_method: str = EFFECT_SIZE_CI_METHOD
    variants: list[VariantResult]  # spec order
    best: dict[str, list[str]] = Field(default_factory=dict)  # metric -> best variant(s)
    factor_effects: list[FactorEffect] = Field(default_factory=list)
    curves: list[Curve] = Field(default_factory=list)  # primary metric only
    cost: list[ArmCost] = Field(default_factory=list)
    """Per variant: mean samples, training FLOPs and wall time per trial, and ratios to the
    baseline; empty when the trials recorded no cost."""
    downstream: Downstream | None = None
    """Downstream tasks: one block per task, their Holm family and the Meta-Sum; None when
    no task was evaluated."""
    sequential: Sequential | None = None
    """Adaptive seeds only: the decisions of the group-sequential procedure, the verdicts that
    hold under optional stopping (the fixed-design p values above do not)."""
    notes: list[str] = Field(default_factory=list)

    def variant(self, name: str) -> VariantResult:
        """Look a variant up by name (KeyError if absent)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


# ----------------------------------------------------------------------- direction

_LOWER_SUBSTR = ("loss", "error", "perplexity", "latency", "cost")
_LOWER_TOKENS = {"err", "ppl", "nll", "wer", "cer", "mse", "mae", "rmse", "ece", "fid", "time"}
_HIGHER_SUBSTR = ("recall", "acc", "precision", "bleu", "cider", "rouge", "meteor", "spice")
_HIGHER_TOKENS = {"rsum", "f1", "auc", "map", "ndcg", "mrr", "score"}
_RECALL_AT_K = re.compile(r"^r@?\d+$|^r@k$")


def guess_direction(name: str) -> Direction | None:
    """Direction from the metric's name; None when the name says nothing."""
    low = name.lower()
    tokens = set(re.split(r"[^a-z0-9@]+", low))
    if any(s in low for s in _LOWER_SUBSTR) or tokens & _LOWER_TOKENS:
        return "lower"
    if any(s in low for s in _HIGHER_SUBSTR) or tokens & _HIGHER_TOKENS:
        return "higher"
    if any(_RECALL_AT_K.match(t) for t in tokens):
        return "higher"
    return None


def metric_direction(name: str, overrides: dict[str, str] | None = None) -> Direction:
    """Whether larger values of ``name`` are better.

    ``overrides`` wins; otherwise recall/accuracy/R@k style names are "higher" and
    loss/error/perplexity style names "lower". Unknown names default to "higher"
    (``analyze`` records a note when it had to guess).
    """
    if overrides and name in overrides:
        value = overrides[name]
        if value == "higher":
            return "higher"
        if value == "lower":
            return "lower"
        raise AnalysisError(
            "directions", f"{name!r} must be 'higher' or 'lower', got {value!r}"
        )
    return guess_direction(name) or "higher"


