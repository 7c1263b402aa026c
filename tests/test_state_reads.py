"""The alert stage reads findings, incident state and the outbox whole, in one request each
(pipeline/alert/store.py): a file replaced by another run while it is read is seen as the old
version or the new one, never as pages of both. On S3 through the fault proxy, which replaces
the object at the moment the read's request goes out."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import schema
from pipeline.alert.run import read_findings
from pipeline.lake import Lake
from tests.alertfactory import finding
from tests.alertsinks import direct
from tests.httpfaults import Rule, RuleProxy, in_front_of

pytestmark = pytest.mark.e2e
KEY = "lake/findings/date=2026-11-16/part-cross_tenant_access.parquet"


def _findings(n: int, tag: str) -> bytes:
    """A findings file big enough that a Parquet reader fetches it in several ranges."""
    rows = [
        finding(
            dedup_key=f"cross_tenant_access:{tag}|usr-{i:05d}|t0001",
            actor=f"usr-{i:05d}-{tag}",
            title=f"Cross-tenant access {tag} {i} " + "x" * 200,
        )
        for i in range(n)
    ]
    buf = io.BytesIO()
    # No compression and small pages: many ranges, as a large file would have.
    pq.write_table(
        pa.Table.from_pylist(rows, schema.FINDINGS),
        buf,
        compression="none",
        data_page_size=4096,
        row_group_size=500,
    )
    return buf.getvalue()


@pytest.fixture
def proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RuleProxy]:
    with in_front_of(aws, monkeypatch) as p:
        yield p


def test_a_findings_file_replaced_while_it_is_read_is_read_whole(
    aws: str, proxy: RuleProxy
) -> None:
    s3 = direct("s3", aws)
    s3.create_bucket(Bucket="lake")
    old, new = _findings(3000, "old"), _findings(2000, "new")
    assert len(old) > 256 * 1024  # far past what one speculative read of the footer takes
    s3.put_object(Bucket="lake", Key=KEY, Body=old)

    def replace() -> None:  # another run's detect rewrites the file just now
        s3.put_object(Bucket="lake", Key=KEY, Body=new)

    rule = proxy.add(Rule("pass", method="GET", path="/findings/", before=replace, times=1))
    rows = read_findings(Lake("s3://lake/lake"), None)
    assert rule.applied == 1  # the file was replaced while it was being read
    assert {r["actor"].rsplit("-", 1)[1] for r in rows} == {"new"} and len(rows) == 2000


@pytest.mark.parametrize("where", ["local", "s3"])
def test_alert_runs_read_again_only_the_findings_files_written_since_they_last_read(
    where: str, aws: str, tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day's findings are read by every alert run of the day: a file not written since the
    last read (same ETag on S3, same size and time locally) is not fetched again, and one
    written again, even with the same name and size, is."""
    from pipeline.alert import store
    from tests.alertfactory import T0

    if where == "s3":
        direct("s3", aws).create_bucket(Bucket="lake")
        root = "s3://lake/lake"
    else:
        root = str(tmp_path)
    day = "findings/date=2026-11-16"

    def write(name: str, tag: str) -> None:
        rows = pq.read_table(pa.BufferReader(_findings(3, tag)))
        Lake(root).write_table(f"{day}/part-{name}.parquet", rows)

    fetched: list[str] = []
    read_bytes = store.read_bytes

    def counting(lake: Lake, rel: str) -> bytes:
        fetched.append(rel.rsplit("/", 1)[1])
        return read_bytes(lake, rel)

    monkeypatch.setattr(store, "read_bytes", counting)
    write("a", "one")
    write("b", "two")

    def tags() -> set[str]:
        return {r["actor"].rsplit("-", 1)[1] for r in read_findings(Lake(root), T0)}

    assert tags() == {"one", "two"} and sorted(fetched) == ["part-a.parquet", "part-b.parquet"]
    fetched.clear()
    assert tags() == {"one", "two"} and fetched == []  # nothing written since
    write("b", "six")  # rewritten: the same name, the same size
    assert tags() == {"one", "six"} and fetched == ["part-b.parquet"]
