"""The differential fuzzer (tests/fuzz/), bounded: the compiled and the Python CloudTrail decoders
must give the same result on mutated real records.

A fixed seed and a few hundred files, so every ``make test`` repeats the same cases in seconds;
``make soak`` runs a longer pass, and ``make fuzz`` runs it for minutes against a build of the
extension with AddressSanitizer and UndefinedBehaviorSanitizer, from a new seed each time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.ingest import native
from tests.fuzz import differential

REPO = Path(__file__).resolve().parent.parent


def _agree(seed: int, cases: int) -> None:
    assert native.available()

    def disagreement(kind: str) -> bool:
        # Both decoders failing alike is agreement; such a crash is still a bug, which make
        # fuzz reports beside the disagreements.
        return not kind.startswith("crash: both")

    seeds = differential.default_seeds(REPO)
    report = differential.run(seeds, seed=seed, max_cases=cases, shrink_if=disagreement)
    disagreements = [f for f in report.findings if disagreement(f.kind)]
    assert not disagreements, "\n".join(
        f"{f.kind}: {f.detail}\n  files: {list(f.files)!r}" for f in disagreements
    )
    # Not a vacuous pass: the C decoder took a fair share of the files whole, and both
    # ingested and quarantined records came out of them.
    assert report.cases >= cases
    assert report.taken >= cases // 5, report
    assert report.rows > cases // 2 and report.quarantined > cases // 10, report


@pytest.mark.slow
def test_both_decoders_agree_on_mutated_records() -> None:
    _agree(seed=1, cases=300)


@pytest.mark.soak
def test_both_decoders_agree_on_many_mutated_records() -> None:
    _agree(seed=2, cases=6000)
