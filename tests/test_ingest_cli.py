"""``tenantwatch ingest``: its summary, its imports, and its usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import logfactory as lf
from tests.conftest import REPO
from tests.pooled import pooled_file


def test_summary_keys_and_json_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.ct()])
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            pooled_file(tmp_path / "cfg"),
            "ingest",
            str(tmp_path / "in"),
            "--lake",
            str(tmp_path / "lake"),
            "--json",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    for key in (
        "files",
        "records_in",
        "ingested",
        "duplicates",
        "quarantined",
        "unresolved_tenants",
        "elapsed_s",
    ):
        assert key in summary
    assert summary["ingested"] == 1


def test_the_ingest_command_does_not_import_pandas_and_pandas_still_works_after(
    tmp_path: Path,
) -> None:
    """pyarrow would import pandas on its first conversion (``startup.pyarrow_without_pandas``).
    In a process of its own, as the command runs: ingest, then ask for pandas."""
    lf.delivery_file(tmp_path / "in" / "1.json.gz", [lf.ct(), lf.ct()])
    code = (
        "import sys, json\n"
        "from pipeline.cli import cli\n"
        "try:\n"
        f"    cli(['ingest', {str(tmp_path / 'in')!r}, '--lake', {str(tmp_path / 'lake')!r},"
        " '--workers', '1', '--json'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "during = 'pandas' in sys.modules\n"
        "import pyarrow as pa\n"
        "frame = pa.table({'a': [1, 2]}).to_pandas()\n"
        "print(json.dumps([during, type(frame).__name__, int(frame['a'].sum())]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    summary, checks = out.stdout.strip().splitlines()
    assert json.loads(summary)["ingested"] == 2
    assert json.loads(checks) == [False, "DataFrame", 3]


def test_missing_source_is_an_error_with_exit_code_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    result = CliRunner().invoke(cli, ["ingest", str(tmp_path / "nope"), "--lake", str(tmp_path)])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_a_lake_that_cannot_be_written_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct()])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(
        cli,
        [
            *("--config", pooled_file(tmp_path / "cfg"), "ingest", str(tmp_path / "in")),
            *("--lake", str(blocker / "lake"), "--workers", "1"),
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "cannot be written" in lines[0], result.output
    assert "Traceback" not in result.output


def test_until_before_since_is_an_error_not_an_empty_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipeline.cli import cli

    lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct()])
    args = ["ingest", str(tmp_path / "in"), "--lake", str(tmp_path / "lake"), "--workers", "1"]
    result = CliRunner().invoke(cli, [*args, "--since", "2026-03-02", "--until", "2026-03-01"])
    assert result.exit_code == 2, result.output
    assert "before --since" in result.output
    assert not (tmp_path / "lake" / "events").exists()
