"""Is a paired test honest here? Only if each seed's two trials shared their randomness.

Pairing by seed number alone assumes that seed s gave both arms the same data order, the same
initial weights for the parts they share and the same random streams. Trials record hashes of
these (``trainer.fingerprints``); two arms are paired only where every fingerprint both
recorded agrees at every common seed. Otherwise the comparison falls back to Welch's test, which
assumes nothing about the pairing, and says which fingerprint broke it. A paired test on arms
that share nothing would still be valid, but it would claim a precision the design never had.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.analysis.summaries import Table


@dataclass(frozen=True)
class Pairing:
    broken: bool
    label: str
    """"verified", "not verified: ..." or "broken: ..." (the Comparison's ``pairing``)."""


def check_pairing(table: Table, a: int, b: int) -> Pairing:
    """The pairing of variants ``a`` and ``b`` over the seeds both have done."""
    if not table.fingerprints:
        return Pairing(False, "not verified: no fingerprints in the input")
    fa, fb = table.fingerprints[a], table.fingerprints[b]
    common = sorted(set(fa) & set(fb))
    if not common:
        return Pairing(False, "not verified: no seed done by both")
    unrecorded = [s for s in common if not fa[s] or not fb[s]]
    differing: dict[str, list[int]] = {}
    for seed in common:
        pa, pb = fa[seed], fb[seed]
        if not pa or not pb:
            continue
        for key in sorted(set(pa) & set(pb)):
            if pa[key] != pb[key]:
                differing.setdefault(key, []).append(seed)
    if differing:
        parts = [f"{key} differs at seed{'s' if len(seeds) > 1 else ''} "
                 f"{', '.join(map(str, seeds[:5]))}{' ...' if len(seeds) > 5 else ''}"
                 for key, seeds in differing.items()]
        return Pairing(True, "broken: " + "; ".join(parts))
    if unrecorded:
        return Pairing(False, f"not verified: {len(unrecorded)} of {len(common)} seeds have a "
                       "trial that recorded no fingerprints")
    return Pairing(False, "verified")
