"""The cost table of a comparison: what one trial of each arm took to train, and its ratio to
the baseline (``service.analysis.cost``)."""

from __future__ import annotations

from service.analysis import Analysis
from service.report.table import Column, Table, TCell


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def _times(ratio: float | None, of: str = "") -> str:
    """`` (×r)`` or `` (×r of training)``; empty when the ratio is unknown."""
    return "" if ratio is None else f" (×{ratio:.2f}{of})"


def cost_table(a: Analysis) -> Table:
    """Per arm: what one trial cost to train, and its ratio to the baseline."""
    rows = []
    finetune = any(c.finetune_samples for c in a.cost)
    for c in a.cost:
        row = [TCell(c.variant), TCell(str(c.n)), TCell(_si(c.samples)),
               TCell(_si(c.flops, "FLOP") + _times(c.flops_ratio)),
               TCell("–" if c.train_s is None
                     else f"{c.train_s:.1f} s{_times(c.train_s_ratio)}")]
        of = " of training"
        seconds = ("–" if c.finetune_s is None
                   else f"{c.finetune_s:.1f} s{_times(c.finetune_s_ratio, of)}")
        flops = _si(c.finetune_flops, "FLOP") + _times(c.finetune_flops_ratio, of)
        rows.append(row + ([TCell(_si(c.finetune_samples)), TCell(flops), TCell(seconds)]
                           if finetune else []))
    columns = [Column("variant", "l"), Column("trials"), Column("samples"),
               Column("training FLOPs"), Column("training time")]
    notes = ["FLOPs: forward and backward of one optimizer step counted by PyTorch's "
             "FlopCounterMode on the trial's first batch, times its steps; evaluation "
             "excluded. Time: training steps' wall time on the trial's worker."]
    if finetune:
        columns += [Column("fine-tune samples"), Column("fine-tune FLOPs"),
                    Column("downstream time")]
        notes.append("Fine-tune samples: the downstream tasks' fine-tunes of one trial "
                     "(steps × batch per task evaluated; minimal pairs are zero-shot). "
                     "Fine-tune FLOPs: their forward and backward passes, counted by "
                     "FlopCounterMode on each fine-tune's first step and scaled by its samples "
                     "(selection and test passes excluded, as in pretraining), × this arm's "
                     "own training FLOPs. Downstream time: the wall time of every task's "
                     "evaluation (fine-tune, selection on val, test), × this arm's own "
                     "training time; none of these is in the pretraining columns.")
    return Table(caption="Cost per trial (mean over done trials; × baseline)", columns=columns,
                 rows=rows, footnotes=notes)
