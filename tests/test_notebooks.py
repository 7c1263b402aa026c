"""The analyst notebooks run headless against ``sample_logs/`` and are stored without outputs.

Parameters are injected papermill's way: a cell after the one tagged ``parameters`` that
assigns the test's values. Any cell that raises fails the test with the cell's traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SAMPLE_LOGS

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_both_notebooks_are_there() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"investigate_incident.ipynb", "tune_detectors.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs (clear them before committing)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_has_a_parameters_cell(path: Path) -> None:
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["cell_type"] == "code"


def execute(path: Path, params: dict[str, Any]) -> Any:
    """Run ``path`` with ``params`` injected after its parameters cell; return the notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(at + 1, injected)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


@pytest.fixture(scope="module")
def sample_lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One lake built from sample_logs for both notebooks, the way they build it themselves."""
    if not (SAMPLE_LOGS / "labels.json").is_file():
        pytest.skip("sample_logs/ has not been generated (make sample-logs)")
    pytest.importorskip("nbclient")
    from pipeline import notebook as tw

    return tw.ensure_lake(None, SAMPLE_LOGS, workdir=tmp_path_factory.mktemp("sample"))


def _outputs(nb: Any) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _images(nb: Any) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_investigate_incident_runs(sample_lake: str, tmp_path: Path) -> None:
    nb = execute(
        REPO / "notebooks" / "investigate_incident.ipynb",
        {"lake": sample_lake, "logs": str(SAMPLE_LOGS)},
    )
    text = _outputs(nb)
    assert "intact" in text and "NOT INTACT" not in text
    assert _images(nb) >= 1  # the timeline


@pytest.mark.slow
def test_investigate_a_tenant_switching_incident(sample_lake: str) -> None:
    from pipeline import notebook as tw

    picked = tw.incidents(sample_lake, detector="tenant_switching")
    assert all("tenant_switching" in ds for ds in picked["detectors"])
    # An incident of several signals is picked by any of them, not only by its lead detector.
    inc = picked.iloc[0]
    for det in inc["detectors"]:
        assert inc["incident_id"] in set(tw.incidents(sample_lake, detector=det)["incident_id"])
    nb = execute(
        REPO / "notebooks" / "investigate_incident.ipynb",
        {"lake": sample_lake, "incident_id": inc["incident_id"][:12], "margin_minutes": 10},
    )
    # The timeline, and a picture for each detector of the story that has one.
    pictured = {"authz_failure_spike", "tenant_switching"} & set(inc["detectors"])
    assert _images(nb) >= 1 + len(pictured) >= 2


@pytest.mark.slow
def test_tune_detectors_runs_and_writes_a_loadable_snippet(
    sample_lake: str, tmp_path: Path
) -> None:
    from pipeline.config import load_config

    snippet = tmp_path / "tuned.toml"
    nb = execute(
        REPO / "notebooks" / "tune_detectors.ipynb",
        {"lake": sample_lake, "logs": str(SAMPLE_LOGS), "steps": 3, "snippet_path": str(snippet)},
    )
    assert _images(nb) >= 1  # the precision/recall curves
    cfg = load_config(snippet, environ={})
    assert set(cfg.detectors) == {"cross_tenant_access", "tenant_switching", "authz_failure_spike"}
    # On the sample every attack is found at the configured settings, so the chosen values must
    # keep that.
    assert "recall 1.00" in snippet.read_text()


@pytest.mark.slow
def test_tune_detectors_measures_precision_from_verdicts(sample_lake: str, tmp_path: Path) -> None:
    from pipeline import verdicts
    from pipeline.lake import Lake

    # On a copy: the other notebooks read the shared lake.
    shutil.copytree(sample_lake, tmp_path / "lake")
    lake = Lake(str(tmp_path / "lake"))
    cross = [r for r in verdicts.read_incidents(lake) if "cross_tenant_access" in r.detectors]
    verdicts.close(lake, cross[0], "true_positive", "confirmed with the tenant", "alice")
    verdicts.close(lake, cross[1], "benign", "a migration", "bob")
    verdicts.close(lake, cross[1], "false_positive", "not cross-tenant after all", "bob")
    nb = execute(
        REPO / "notebooks" / "tune_detectors.ipynb",
        {"lake": lake.root, "logs": "", "config_path": str(SAMPLE_LOGS / "tenantwatch.toml"),
         "steps": 2},
    )  # fmt: skip
    text = _outputs(nb)
    assert (
        "cross_tenant_access: precision 0.50 from 2 closed incidents "
        "(1 true positive, 1 false positive, 0 benign)"
    ) in text
