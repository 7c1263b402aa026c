"""Who acted: ``actor_principal`` is one name per identity, whatever shape its records take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config
from pipeline.ingest import native
from pipeline.ingest.run import ingest
from pipeline.lake import read_events
from tests import logfactory as lf


def iam_user(event: str, *, name: str | None = "anaya", arn: bool = True, **extra: Any) -> dict:
    """A console sign-in event of an IAM user; console CheckMfa records carry no ARN."""
    identity: dict[str, Any] = {
        "type": "IAMUser",
        "principalId": "AIDACKCEVSQ6C2EXAMPLE",
        "accountId": lf.ACCOUNT,
        "accessKeyId": "",
    }
    if name is not None:
        identity["userName"] = name
    if arn and name is not None:
        identity["arn"] = f"arn:aws:iam::{lf.ACCOUNT}:user/{name}"
    rec = lf.ct(event, userIdentity=identity, requestParameters=None, **extra)
    rec["eventSource"] = "signin.amazonaws.com"
    rec["eventType"] = "AwsConsoleSignIn"
    return rec


@pytest.mark.parametrize("decoder", ["native", "python"])
def test_an_iam_user_without_an_arn_is_named_by_its_user_name_or_left_unresolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    monkeypatch.setenv("TENANTWATCH_NATIVE", "1" if decoder == "native" else "0")
    records = {
        "login": iam_user("ConsoleLogin"),
        "mfa": iam_user("CheckMfa", arn=False),
        "china": iam_user("CheckMfa", arn=False, awsRegion="cn-north-1"),
        "govcloud": iam_user("CheckMfa", arn=False, awsRegion="us-gov-west-1"),
        # Never guessed: a region of no known partition, no region, no name, CloudTrail's
        # placeholder for a user name that does not exist, no account.
        "unknown region": iam_user("CheckMfa", arn=False, awsRegion="xx-moon-1"),
        "no region": iam_user("CheckMfa", arn=False, awsRegion=None),
        "no name": iam_user("CheckMfa", name=None),
        "hidden": iam_user("ConsoleLogin", name="HIDDEN_DUE_TO_SECURITY_REASONS", arn=False),
        "no account": iam_user("CheckMfa", arn=False),
    }
    del records["no account"]["userIdentity"]["accountId"]
    del records["no account"]["recipientAccountId"]
    path = lf.delivery_file(tmp_path / "in" / "signin.json.gz", list(records.values()))
    if decoder == "native":  # both decoders meet where the name is given (after decoding)
        body = json.dumps({"Records": list(records.values())}).encode()
        assert native._ctscan is not None and native._ctscan.Builder().add(body) is not None
    ingest([str(path)], str(tmp_path / "lake"), Config(), workers=1)
    by_id = {r["event_id"]: r for r in read_events(str(tmp_path / "lake")).to_pylist()}
    got = {k: by_id[r["eventID"]]["actor_principal"] for k, r in records.items()}
    user = f"arn:aws:iam::{lf.ACCOUNT}:user/anaya"
    assert got == {
        "login": user,
        "mfa": user,
        "china": f"arn:aws-cn:iam::{lf.ACCOUNT}:user/anaya",
        "govcloud": f"arn:aws-us-gov:iam::{lf.ACCOUNT}:user/anaya",
        "unknown region": None,
        "no region": None,
        "no name": None,
        "hidden": None,
        "no account": None,
    }
    assert {by_id[r["eventID"]]["actor_type"] for r in records.values()} == {"IAMUser"}


def test_other_identities_keep_their_names(tmp_path: Path) -> None:
    """Only IAM users are named so: an account acting across accounts is named by the account
    and the role session its principal id names, a service by its name, an assumed role by its
    ARN."""
    other_account = lf.ct(
        userIdentity={"type": "AWSAccount", "principalId": "AIDAOTHER", "accountId": "444455556666"}
    )
    session = lf.ct(
        userIdentity={
            "type": "AWSAccount",
            "principalId": "AROAOTHER000000000001:ext-consultant-ana",
            "accountId": "444455556666",
        }
    )
    service = lf.ct(userIdentity={"type": "AWSService", "invokedBy": "s3.amazonaws.com"})
    role = lf.ct()
    path = lf.delivery_file(tmp_path / "in" / "x.json.gz", [other_account, session, service, role])
    ingest([str(path)], str(tmp_path / "lake"), Config(), workers=1)
    by_id = {r["event_id"]: r for r in read_events(str(tmp_path / "lake")).to_pylist()}
    assert by_id[other_account["eventID"]]["actor_principal"] == "aws-account:444455556666"
    # A role session of the other account is named by the session, not by the role's id.
    named = by_id[session["eventID"]]["actor_principal"]
    assert named == "aws-account:444455556666/ext-consultant-ana"
    assert by_id[service["eventID"]]["actor_principal"] == "s3.amazonaws.com"
    assert by_id[role["eventID"]]["actor_principal"] == role["userIdentity"]["arn"]
