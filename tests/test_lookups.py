"""Lookups: every [[tenancy.lookup]] read once per run, from any source it may live in, with the
errors a run must stop on before it ingests anything."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.ingest.lookups import load_lookups
from pipeline.tables import TableError
from tests import logfactory as lf

REGISTRY = {"111122223333": "acme", "444455556666": "globex"}


def config(tmp_path: Path, **lookup: Any) -> Any:
    """A configuration with one lookup, written as a file beside ``tmp_path``'s data."""
    return parse_config(
        {
            "tenancy": {
                "lookup": [
                    {"name": "accounts", "key": "account_id", "tenant": "tenant_id", **lookup}
                ]
            }
        },
        environ={},
    )


def rows() -> list[dict[str, str]]:
    return [{"account_id": a, "tenant_id": t} for a, t in REGISTRY.items()]


def loaded(cfg: Any) -> dict[str, str]:
    return load_lookups(cfg)["accounts"].as_dict()


@pytest.mark.parametrize("fmt", ["csv", "json", "json-object", "jsonl", "parquet", "csv.gz"])
def test_a_registry_file_in_any_format_maps_keys_to_tenants(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"registry.{fmt.removesuffix('-object')}"
    if fmt.startswith("csv"):
        text = "account_id,tenant_id,plan\n" + "".join(
            f"{a},{t},pro\n" for a, t in REGISTRY.items()
        )
        data = text.encode()
        path.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
    elif fmt == "json":
        path.write_text(json.dumps(rows()))
    elif fmt == "json-object":
        path.write_text(json.dumps(REGISTRY))  # {key: tenant}: the lookup names the columns
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    else:
        pq.write_table(pa.Table.from_pylist(rows()), path)
    assert loaded(config(tmp_path, file=str(path))) == REGISTRY


def test_inline_values_and_a_relative_file_next_to_the_configuration(tmp_path: Path) -> None:
    assert loaded(config(tmp_path, values=REGISTRY)) == REGISTRY
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "t.json").write_text(json.dumps(rows()))
    (tmp_path / "tw.toml").write_text(
        '[[tenancy.lookup]]\nname = "accounts"\nfile = "registry/t.json"\n'
        'key = "account_id"\ntenant = "tenant_id"\n'
    )
    from pipeline.config import load_config

    assert loaded(load_config(tmp_path / "tw.toml", environ={})) == REGISTRY


def test_a_key_the_table_lacks_maps_to_nothing_never_to_itself() -> None:
    cfg = parse_config(
        {"tenancy": {"lookup": [{"name": "accounts", "values": REGISTRY}]}}, environ={}
    )
    table = load_lookups(cfg)["accounts"]
    got = table.apply(pa.array(["444455556666", "999999999999", None, "acme"]))
    assert got.to_pylist() == ["globex", None, None, None]


def test_rows_without_a_key_or_a_tenant_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("account_id,tenant_id\n111122223333,acme\n444455556666,\n,globex\n")
    assert loaded(config(tmp_path, file=str(path))) == {"111122223333": "acme"}


def test_the_same_key_twice_with_the_same_tenant_is_one_entry(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("account_id,tenant_id\n111122223333,acme\n111122223333,acme\n")
    assert loaded(config(tmp_path, file=str(path))) == {"111122223333": "acme"}


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "absent.csv", "absent.csv: file not found"),
        (b"[{]", "r.json", "r.json: cannot be parsed"),
        (b"account_id,tenant_id\n1,a,extra\n", "r.csv", "line 2 has more cells than the header"),
        (b"\x00\x01", "r.parquet", "r.parquet: cannot be parsed"),
        (b"id,owner\n1,a\n", "r.csv", "no 'account_id' column (it has id, owner)"),
        (b"a,b\n", "r.txt", "expected a .csv, .json, .jsonl or .parquet file"),
        (
            b"account_id,tenant_id\n111122223333,acme\n111122223333,globex\n",
            "r.csv",
            "key '111122223333' is mapped to two tenants ('acme' and 'globex')",
        ),
        (
            b'[{"account_id": ["1", "2"], "tenant_id": "a"}]',
            "r.json",
            "expected one value, got a list",
        ),
    ],
)
def test_a_bad_registry_file_is_a_configuration_error_naming_it(
    tmp_path: Path, content: bytes | None, name: str, message: str
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_lookups(config(tmp_path, file=str(tmp_path / name)))
    assert message in str(err.value)
    assert "tenancy.lookup[0] (accounts)" in str(err.value)


def test_a_strategy_naming_an_unknown_lookup_is_refused_at_load() -> None:
    with pytest.raises(
        ConfigError, match=r"tenancy.target\[0\].lookup: no \[\[tenancy.lookup\]\] named 'acounts'"
    ):
        parse_config(
            {
                "tenancy": {
                    "lookup": [{"name": "accounts", "values": REGISTRY}],
                    "target": [
                        {
                            "kind": "field",
                            "source": "cloudtrail",
                            "path": "recipientAccountId",
                            "lookup": "acounts",
                        }
                    ],
                }
            },
            environ={},
        )


# --- at the AWS edge (moto over HTTP) ----------------------------------------------------------


def _registry_table(name: str = "tenant-registry") -> None:
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for account, tenant in REGISTRY.items():
        item = {
            "pk": {"S": f"ACCOUNT#{account}"},
            "account_id": {"S": account},
            "tenant_id": {"S": tenant},
        }
        ddb.put_item(TableName=name, Item=item)
    ddb.put_item(TableName=name, Item={"pk": {"S": "META#schema"}, "version": {"N": "3"}})


@pytest.mark.e2e
def test_a_dynamodb_registry_is_scanned_and_items_of_other_kinds_left_out(aws: str) -> None:
    _registry_table()
    cfg = parse_config(
        {
            "tenancy": {
                "lookup": [
                    {
                        "name": "accounts",
                        "dynamodb_table": "tenant-registry",
                        "key": "account_id",
                        "tenant": "tenant_id",
                    }
                ]
            }
        },
        environ={},
    )
    assert loaded(cfg) == REGISTRY


@pytest.mark.e2e
def test_a_registry_in_s3_is_read_and_a_missing_object_named(aws: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="config")
    s3.put_object(Bucket="config", Key="registry/accounts.json", Body=json.dumps(rows()))
    assert loaded(config(tmp_path, file="s3://config/registry/accounts.json")) == REGISTRY
    with pytest.raises(ConfigError, match=r"s3://config/registry/absent\.json: no such object"):
        load_lookups(config(tmp_path, file="s3://config/registry/absent.json"))


def _silo_config(tmp_path: Path, lookup: str) -> Path:
    path = tmp_path / "tenantwatch.toml"
    path.write_text(
        lookup + '[[tenancy.target]]\nkind = "field"\nsource = "cloudtrail"\n'
        'path = "recipientAccountId"\nlookup = "accounts"\n'
    )
    return path


def _ingest(tmp_path: Path, cfg: Path) -> Any:
    lf.delivery_file(tmp_path / "in" / "a.json.gz", [lf.ct()])
    args = ["--config", str(cfg), "ingest", str(tmp_path / "in"), "--lake", str(tmp_path / "lake")]
    return CliRunner().invoke(cli, [*args, "--workers", "1"])


@pytest.mark.e2e
def test_an_unreadable_dynamodb_registry_stops_ingest_with_exit_1_before_anything_is_written(
    aws: str, tmp_path: Path
) -> None:
    cfg = _silo_config(
        tmp_path,
        '[[tenancy.lookup]]\nname = "accounts"\ndynamodb_table = "no-such-table"\n'
        'key = "account_id"\ntenant = "tenant_id"\n',
    )
    result = _ingest(tmp_path, cfg)
    assert result.exit_code == 1, result.output
    assert (
        "tenancy.lookup[0] (accounts): DynamoDB table 'no-such-table' cannot be read"
        in result.output
    )
    assert not (tmp_path / "lake").exists()
    with pytest.raises(TableError):
        from pipeline.config import load_config

        load_lookups(load_config(cfg, environ={}))


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        (None, "registry.csv: file not found"),
        ("account_id,tenant_id\n111122223333,acme\n111122223333,globex\n", "key '111122223333'"),
    ],
)
def test_a_missing_or_contradictory_registry_stops_ingest_with_exit_2(
    tmp_path: Path, registry: str | None, message: str
) -> None:
    if registry is not None:
        (tmp_path / "registry.csv").write_text(registry)
    cfg = _silo_config(
        tmp_path,
        '[[tenancy.lookup]]\nname = "accounts"\nfile = "registry.csv"\n'
        'key = "account_id"\ntenant = "tenant_id"\n',
    )
    result = _ingest(tmp_path, cfg)
    assert result.exit_code == 2, result.output
    assert message in result.output and "tenancy.lookup[0] (accounts)" in result.output
    assert not (tmp_path / "lake").exists()
