"""Shared fixtures: kept tiny on purpose (factories live beside the tests that use them)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_LOGS = REPO / "sample_logs"
REAL_LOGS = REPO.parent / "shared" / "real_logs"


@pytest.fixture
def real_logs() -> Path:
    """The public third-party CloudTrail corpus; CI has it beside the checkout."""
    if not REAL_LOGS.is_dir():
        pytest.skip(f"{REAL_LOGS} is absent: the third-party corpus lives outside the repo")
    return REAL_LOGS
