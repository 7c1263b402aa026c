"""Listing a source folder (``sources``): links followed, each input once, loops ended."""

from __future__ import annotations

from pathlib import Path

from tests import logfactory as lf
from tests.ingestlake import rows, run


def test_links_in_a_source_folder_are_followed_each_input_once_and_a_loop_ends(
    tmp_path: Path,
) -> None:
    lf.delivery_file(
        tmp_path / "data" / "2026" / "a.json.gz", [lf.ct(event_id=f"a{i}") for i in range(2)]
    )
    lf.delivery_file(tmp_path / "other" / "b.json.gz", [lf.ct(event_id="b")])
    src = tmp_path / "in"
    src.mkdir()
    (src / "days").symlink_to(tmp_path / "data", target_is_directory=True)
    (src / "again").symlink_to(tmp_path / "data" / "2026", target_is_directory=True)
    (src / "b.json.gz").symlink_to(tmp_path / "other" / "b.json.gz")
    (src / "b-too.json.gz").symlink_to(tmp_path / "other" / "b.json.gz")
    (src / "loop").symlink_to(src, target_is_directory=True)
    summary = run(tmp_path / "lake", src)
    assert (summary["files"], summary["records_in"]) == (2, 3)
    assert (summary["ingested"], summary["duplicates"]) == (3, 0)
    uris = {r["input_uri"] for r in rows(tmp_path / "lake")}
    assert uris == {
        str((tmp_path / "data" / "2026" / "a.json.gz").resolve()),
        str((tmp_path / "other" / "b.json.gz").resolve()),
    }
