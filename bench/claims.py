"""The cross-spec table: every paper's claim, checked on every downstream task at once.

Each ``bench/results/<spec>-downstream.json`` is one reproduction's ``/compare`` analysis. This
script reads them and writes ``bench/results/claims.md``: one row per claim, the claim's
contrast on each task's primary metric and on the Meta-Sum with its 95% interval, and a
verdict by one rule for every row. It computes nothing a spec's own analysis did not (deltas,
intervals and raw p values are the service's: paired t where pairing was verified, Welch
otherwise, OLS for factorial main effects), except:

- one contrast between two non-baseline arms (UNITER's +WRA over +MRC-kl+MRFR), which the
  service's own ``analyze`` computes here from the two arms' per-seed values (paired by seed;
  both arms were verified paired with the same baseline);
- the table's own multiplicity family, declared here: Holm per spec across that spec's claims
  x the six tasks' primary metrics; the Meta-Sum is a second family per spec (its claims).

The claims and the verdict rule were written before the last two reproductions
(``adversarial_and_alignment``, ``loss_weights``) had a result:

- **reproduced**: a task or the Meta-Sum is decided (Holm) in the paper's direction, none against;
- **the opposite**: decided against the paper, none for it; **mixed**: both;
- **no detectable difference**: nothing decided (tasks whose uncorrected 95% interval excludes
  zero are listed beside it).

    .venv/bin/python bench/claims.py             # writes bench/results/claims.md
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.analysis import analyze  # noqa: E402
from service.analysis.pairwise import holm as holm_adjusted  # noqa: E402
from service.analysis.schema import ExperimentView, TrialRecord, VariantView  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ALPHA = 0.05
TASKS = ["vqa", "nlvr", "ve", "grounding", "retrieval_ft", "minimal_pairs"]
HEADERS = ["VQA", "NLVR", "VE", "grounding", "retrieval_ft MR", "minimal pairs group"]


@dataclass(frozen=True)
class Claim:
    """A paper's claim as one contrast: ``variant`` better than ``reference``, or a factor's
    main effect (``term``, on minus off) positive."""

    paper: str
    text: str
    spec: str
    variant: str = ""
    reference: str = ""
    term: str = ""

    @property
    def contrast(self) -> str:
        return f"{self.term}: on - off" if self.term else f"{self.variant} vs {self.reference}"


CLAIMS = [
    Claim("ALBEF T1", "ITC is the largest gain", "albef_table1", "+ITC", "baseline"),
    Claim("ALBEF T1", "ITM hard negatives help", "albef_table1", "+ITC+ITM_hard", "+ITC"),
    Claim("ALBEF T1", "MoD on ITC helps (noisy captions)", "albef_table1",
          "+ITC+ITM_hard+ITC_MoD", "+ITC+ITM_hard"),
    Claim("ALBEF T1", "MoD on MLM helps too", "albef_table1",
          "+ITC+ITM_hard+ITC_MoD+MLM_MoD", "+ITC+ITM_hard+ITC_MoD"),
    Claim("ALBEF", "MoD helps, ramped in the first epoch", "albef_mod_warmup",
          "MoD_ramp_epoch", "no_MoD"),
    Claim("ALBEF", "MoD helps, ramped over half the run", "albef_mod_warmup",
          "MoD_ramp_half", "no_MoD"),
    Claim("UNITER T2", "MLM+ITM beats MLM alone", "uniter_table2", "MLM+ITM", "MLM"),
    Claim("UNITER T2", "MLM+ITM beats ITM alone", "uniter_table2", "MLM+ITM", "ITM"),
    Claim("UNITER T2", "MRC-kl adds", "uniter_table2", "+MRC-kl", "MLM+ITM"),
    Claim("UNITER T2", "MRFR adds", "uniter_table2", "+MRFR", "MLM+ITM"),
    Claim("UNITER T2", "MRC-kl + MRFR add", "uniter_table2", "+MRC-kl+MRFR", "MLM+ITM"),
    Claim("UNITER T2", "WRA adds on top", "uniter_table2", "+WRA", "+MRC-kl+MRFR"),
    Claim("VLMo", "MoME beats shared fusion at matched size", "vlmo_mome", "mome", "albef"),
    Claim("VILLA", "adversarial training helps", "adversarial_and_alignment", term="VILLA"),
    Claim("IAIS", "relation alignment helps", "adversarial_and_alignment", term="IAIS"),
]


@dataclass(frozen=True)
class Contrast:
    delta: float
    low: float
    high: float
    p: float


def scale(metric: str) -> float:
    """Zero-shot recall is stored in percent; downstream scores and the Meta-Sum as fractions."""
    return 1.0 if metric == "mean_recall" else 100.0


def _variant(analysis: dict[str, Any], name: str) -> dict[str, Any]:
    for v in analysis["variants"]:
        if v["name"] == name:
            return v
    raise KeyError(f"{analysis['experiment']}: no variant {name!r}")


def _from_comparison(c: dict[str, Any], sign: float, k: float) -> Contrast | None:
    """A kept comparison in points; None where it has no test or interval (too few seeds)."""
    if c["ci"] is None or c["p"] is None:
        return None
    lo, hi = c["ci"]["low"] * k * sign, c["ci"]["high"] * k * sign
    return Contrast(c["delta"] * k * sign, min(lo, hi), max(lo, hi), c["p"])


def _between_arms(analysis: dict[str, Any], claim: Claim, metric: str, k: float
                  ) -> Contrast | None:
    """A contrast the spec's analysis did not make, by the service's own ``analyze`` on the
    two arms' kept per-seed values."""
    trials = [TrialRecord(variant=name, seed=seed, status="finished", metrics={metric: value})
              for name in (claim.reference, claim.variant)
              for seed, value in zip(_variant(analysis, name)["cells"][metric]["seeds"],
                                     _variant(analysis, name)["cells"][metric]["values"],
                                     strict=True)]
    view = ExperimentView(name=analysis["experiment"], design="explicit",
                          variants=[VariantView(name=claim.reference),
                                    VariantView(name=claim.variant)],
                          baseline=claim.reference, primary_metric=metric, metrics=[metric],
                          trials=trials)
    c = analyze(view, directions={metric: "higher"}).variant(claim.variant).vs_baseline[metric]
    return _from_comparison(c.model_dump(), 1.0, k)


def contrast(analysis: dict[str, Any], claim: Claim, metric: str) -> Contrast | None:
    """The claim's contrast on one metric, signed so that positive is the paper's direction."""
    k = scale(metric)
    if claim.term:
        for e in analysis["factor_effects"]:
            if e["metric"] == metric and e["term"] == claim.term and e["ci"] is not None:
                return Contrast(e["estimate"] * k, e["ci"]["low"] * k, e["ci"]["high"] * k,
                                e["p"])
        return None
    variant = _variant(analysis, claim.variant)
    for key in ("vs_baseline", "vs_previous"):
        c = variant[key].get(metric)
        if c is not None and c["reference"] == claim.reference:
            return _from_comparison(c, 1.0, k)
    c = _variant(analysis, claim.reference)["vs_baseline"].get(metric)
    if c is not None and c["reference"] == claim.variant:
        return _from_comparison(c, -1.0, k)
    if metric in variant["cells"]:
        return _between_arms(analysis, claim, metric, k)
    return None


def primaries(analysis: dict[str, Any]) -> dict[str, str]:
    return {t["task"]: t["primary"] for t in analysis["downstream"]["tasks"]}


def holm(ps: list[float]) -> list[float]:
    return [float(p) for p in holm_adjusted(np.array(ps, dtype=float))] if ps else []


@dataclass
class Row:
    claim: Claim
    zero_shot: Contrast | None
    tasks: dict[str, Contrast | None]
    meta_sum: Contrast | None
    p_tasks: dict[str, float]
    p_meta: float | None = None

    def decided(self) -> tuple[list[str], list[str]]:
        got = [(t, c, self.p_tasks[t]) for t, c in self.tasks.items() if c is not None]
        if self.meta_sum is not None and self.p_meta is not None:
            got.append(("Meta-Sum", self.meta_sum, self.p_meta))
        for_ = [t for t, c, p in got if p < ALPHA and c.delta > 0]
        against = [t for t, c, p in got if p < ALPHA and c.delta < 0]
        return for_, against

    def verdict(self) -> str:
        for_, against = self.decided()
        if for_ and against:
            return f"**mixed** (for: {', '.join(for_)}; against: {', '.join(against)})"
        if for_:
            return f"**reproduced** ({', '.join(for_)})"
        if against:
            return f"**the opposite** ({', '.join(against)})"
        leaning = [t for t, c in self.tasks.items() if c is not None and (c.low > 0 or c.high < 0)]
        closest = min(self.p_tasks.items(), key=lambda kv: kv[1], default=None)
        notes = [f"uncorrected CI excludes 0: {', '.join(leaning)}"] if leaning else []
        if closest is not None and closest[1] < 1.0:
            notes.append(f"smallest Holm p {closest[1]:.2f}, {closest[0]}")
        return "no detectable difference" + (f" ({'; '.join(notes)})" if notes else "")


def rows_for(spec: str, analysis: dict[str, Any], claims: list[Claim]) -> list[Row]:
    tasks = primaries(analysis)
    rows = [Row(c, contrast(analysis, c, "mean_recall"),
                {t: contrast(analysis, c, tasks[t]) if t in tasks else None for t in TASKS},
                contrast(analysis, c, "meta_sum"), {}) for c in claims]
    family = [(i, t, r.tasks[t]) for i, r in enumerate(rows) for t in TASKS
              if r.tasks[t] is not None]
    for (i, t, _), p in zip(family, holm([c.p for _, _, c in family if c]), strict=True):
        rows[i].p_tasks[t] = p
    metas = [(i, r.meta_sum) for i, r in enumerate(rows) if r.meta_sum is not None]
    for (i, _), p in zip(metas, holm([m.p for _, m in metas if m]), strict=True):
        rows[i].p_meta = p
    return rows


def cell(c: Contrast | None, p: float | None = None) -> str:
    if c is None:
        return "-"
    mark = "**" if p is not None and p < ALPHA else ""
    return f"{mark}{c.delta:+.1f}{mark} [{c.low:+.1f}, {c.high:+.1f}]"


def commit_line(spec: str) -> str:
    text = (RESULTS / f"{spec}-downstream.md").read_text()
    found = re.search(r"^- Commit: (\S+)", text, re.M)
    return found.group(1)[:7] if found else "unknown"


def claims_table(analyses: dict[str, dict[str, Any]]) -> tuple[list[str], list[Row]]:
    lines = ["| Paper | Claim | Contrast (spec) | zero-shot MR | " + " | ".join(HEADERS)
             + " | Meta-Sum | Verdict |", "|---" * (6 + len(HEADERS)) + "|"]
    out: list[Row] = []
    for spec in dict.fromkeys(c.spec for c in CLAIMS):
        if spec not in analyses:
            continue
        for r in rows_for(spec, analyses[spec], [c for c in CLAIMS if c.spec == spec]):
            out.append(r)
            tasks = " | ".join(cell(r.tasks[t], r.p_tasks.get(t)) for t in TASKS)
            lines.append(f"| {r.claim.paper} | {r.claim.text} | {r.claim.contrast} "
                         f"(`{spec}`) | {cell(r.zero_shot)} | {tasks} | "
                         f"{cell(r.meta_sum, r.p_meta)} | {r.verdict()} |")
    return lines, out


def loss_weights_table(analysis: dict[str, Any]) -> list[str]:
    """The objective-mix sweep has three-level factors: F tests per task, not one contrast."""
    tasks = primaries(analysis)
    metrics = ["mean_recall", *(tasks[t] for t in TASKS if t in tasks), "meta_sum"]
    names = ["zero-shot MR", *(h for t, h in zip(TASKS, HEADERS, strict=True) if t in tasks),
             "Meta-Sum"]
    terms = ["w_ITC", "w_MLM", "w_ITC x w_MLM"]
    found = {(e["term"], e["metric"]): e for e in analysis["factor_effects"]}
    family = [(term, m) for term in terms[:2] for m in metrics[1:-1] if (term, m) in found]
    p_holm = dict(zip(family, holm([found[f]["p"] for f in family]), strict=True))
    lines = ["| Term | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    for term in terms:
        cells = []
        for m in metrics:
            e = found.get((term, m))
            if e is None:
                cells.append("-")
                continue
            p = p_holm.get((term, m))
            text = f"F {e['F']:.2f}, p {e['p']:.3f}" + (f" (Holm {p:.3f})" if p is not None
                                                          else "")
            cells.append(f"**{text}**" if p is not None and p < ALPHA else text)
        lines.append(f"| {term} | " + " | ".join(cells) + " |")
    means = sorted(((v["cells"]["meta_sum"]["mean"] * 100, v["name"]) for v in
                    analysis["variants"] if "meta_sum" in v["cells"]), reverse=True)
    if means:
        rank = [n for _, n in means].index(analysis["baseline"]) + 1
        lines += ["", "Meta-Sum by cell, best first: "
                  + "; ".join(f"{n} {m:.1f}" for m, n in means)
                  + f". Equal weights ({analysis['baseline']}) rank {rank} of {len(means)}."]
    return lines


def cost_table(analyses: dict[str, dict[str, Any]]) -> list[str]:
    """The issue's budget: a trial's downstream stage against its pretraining steps."""
    lines = ["| Spec | arms | training steps, s per trial | downstream, s per trial | "
             "downstream / training | downstream FLOPs / training FLOPs |", "|---" * 6 + "|"]
    for spec, a in analyses.items():
        arms = [c for c in a["cost"] if c.get("finetune_s") and c.get("train_s")]
        if not arms:
            continue
        ratio = [c["finetune_s"] / c["train_s"] for c in arms]
        flops = [c["finetune_flops"] / c["flops"] for c in arms
                 if c.get("finetune_flops") and c.get("flops")]
        lines.append(
            f"| `{spec}` | {len(arms)} | {min(c['train_s'] for c in arms):.0f}-"
            f"{max(c['train_s'] for c in arms):.0f} | {min(c['finetune_s'] for c in arms):.0f}-"
            f"{max(c['finetune_s'] for c in arms):.0f} | {min(ratio):.2f}-{max(ratio):.2f}x | "
            + (f"{min(flops):.2f}-{max(flops):.2f}x" if flops else "not counted then") + " |")
    return lines


def main() -> None:
    analyses = {}
    for spec in [*dict.fromkeys(c.spec for c in CLAIMS), "loss_weights"]:
        path = RESULTS / f"{spec}-downstream.json"
        if path.exists():
            analyses[spec] = json.loads(path.read_text())
    lines, rows = claims_table(analyses)
    sources = ", ".join(f"`{s}-downstream.json` ({commit_line(s)})" for s in analyses)
    doc = ["# Every paper's claim on every downstream task", "",
           "Written by `.venv/bin/python bench/claims.py` from " + sources + ". Deltas are the "
           "claim's direction minus its reference, in points (zero-shot mean recall and "
           "downstream test scores in percent; Meta-Sum the sum of the six tasks' primary "
           "scores), 95% intervals over seeds, unadjusted. Bold: decided after Holm, per spec "
           "across its claims x the six tasks (the Meta-Sum a family of its own; zero-shot "
           "outside both). The rule and the claims: see the script's docstring.", "", *lines]
    if "loss_weights" in analyses:
        doc += ["", "## `loss_weights`: ITC and MLM loss weights, 3x3 factorial", "",
                "F tests of each weight's main effect and their interaction; Holm across the "
                "two main effects x the six tasks.", "",
                *loss_weights_table(analyses["loss_weights"])]
    doc += ["", "## Downstream cost against pretraining, per trial", "",
            "From each analysis's cost table (means over an arm's trials; training counts the "
            "pretraining steps only, as `cost_train_s` does).", "", *cost_table(analyses)]
    (RESULTS / "claims.md").write_text("\n".join(doc) + "\n")
    verdicts = {r.claim.text: r.verdict() for r in rows}
    json.dump(verdicts, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
