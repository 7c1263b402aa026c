"""CloudTrail records, shaped like the ones AWS writes, built from shared pieces.

A session's ``userIdentity`` dict is built once and shared by all of its records (orjson encodes
it each time), so the per-record work is one small dict and a few RNG draws.
"""

from __future__ import annotations

import random
import time
from typing import Any

from pipeline.simulate import clock, ids
from pipeline.simulate.world import BUCKET, LAMBDA_UA, SESSION_S, TABLE, Role, World
from pipeline.simulate.writer import Sink

Identity = dict[str, Any]
_CIPHER = "TLS_AES_128_GCM_SHA256"
# A function's execution role credentials are refreshed by Lambda about this often.
SERVICE_CRED_S = 6 * 3600
_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def sts_expiration(epoch: int) -> str:
    """STS logs ``expiration`` as 'Nov 16, 2026, 10:12:44 AM' (the real, odd format)."""
    t = time.gmtime(epoch)
    h12 = t.tm_hour % 12 or 12
    ampm = "AM" if t.tm_hour < 12 else "PM"
    return (
        f"{_MON[t.tm_mon - 1]} {t.tm_mday}, {t.tm_year}, {h12}:{t.tm_min:02d}:{t.tm_sec:02d} {ampm}"
    )


class CloudTrail:
    def __init__(self, world: World, sink: Sink) -> None:
        self.world = world
        self.sink = sink
        spec = world.spec
        self.acct = spec.account
        self.region = spec.region
        self.table_arn = f"arn:aws:dynamodb:{spec.region}:{spec.account}:table/{TABLE}"
        self.s3_host = f"{BUCKET}.s3.{spec.region}.amazonaws.com"
        self._tls: dict[str, dict[str, str]] = {}
        self._bucket_res = {
            "accountId": self.acct,
            "type": "AWS::S3::Bucket",
            "ARN": f"arn:aws:s3:::{BUCKET}",
        }
        self._table_res = [
            {"accountId": self.acct, "type": "AWS::DynamoDB::Table", "ARN": self.table_arn}
        ]
        self._service_ids: dict[tuple[str, int], Identity] = {}

    def tls(self, host: str) -> dict[str, str]:
        got = self._tls.get(host)
        if got is None:
            got = self._tls[host] = {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": _CIPHER,
                "clientProvidedHostHeader": host,
            }
        return got

    @staticmethod
    def lag(rng: random.Random) -> int:
        # CloudTrail delivers within about 5 minutes on average, now and then up to 15.
        return rng.randrange(30, 420) if rng.random() < 0.97 else rng.randrange(420, 900)

    def emit(self, rng: random.Random, ts: int, rec: dict[str, Any]) -> str:
        self.sink.cloudtrail(ts, ts + self.lag(rng), rec)
        return str(rec["eventID"])

    # --- identities ---------------------------------------------------------------------------

    def assumed(
        self, role: Role, session: str, akid: str, created: int, mfa: bool = False
    ) -> Identity:
        return {
            "type": "AssumedRole",
            "principalId": f"{role.role_id}:{session}",
            "arn": f"arn:aws:sts::{self.acct}:assumed-role/{role.name}/{session}",
            "accountId": self.acct,
            "accessKeyId": akid,
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": role.role_id,
                    "arn": role.arn,
                    "accountId": self.acct,
                    "userName": role.name,
                },
                "attributes": {
                    "creationDate": clock.iso(created),
                    "mfaAuthenticated": "true" if mfa else "false",
                },
            },
        }

    def function_identity(self, rng: random.Random, role_name: str, ts: int) -> Identity:
        """A Lambda function's own credentials; the first use in a refresh period also logs the
        AssumeRole that Lambda made for it (type AWSService, source lambda.amazonaws.com)."""
        period = ts // SERVICE_CRED_S
        got = self._service_ids.get((role_name, period))
        if got is None:
            prng = ids.stream(self.world.spec.seed, "function-creds", role_name, period)
            role = self.world.roles[role_name]
            started = max(period * SERVICE_CRED_S + prng.randrange(0, 600), self.sink.start)
            akid = ids.access_key(prng)
            self.assume_role(
                prng,
                started,
                {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
                "lambda.amazonaws.com",
                "lambda.amazonaws.com",
                role,
                role_name,
                duration=None,
                akid=akid,
            )
            got = self._service_ids[(role_name, period)] = self.assumed(
                role, role_name, akid, started
            )
        return got

    # --- records ------------------------------------------------------------------------------

    def _base(
        self,
        rng: random.Random,
        ts: int,
        ident: Identity,
        source: str,
        name: str,
        ip: str,
        ua: str,
        version: str = "1.08",
    ) -> dict[str, Any]:
        return {
            "eventVersion": version,
            "userIdentity": ident,
            "eventTime": clock.iso(ts),
            "eventSource": source,
            "eventName": name,
            "awsRegion": self.region,
            "sourceIPAddress": ip,
            "userAgent": ua,
        }

    def assume_role(
        self,
        rng: random.Random,
        ts: int,
        caller: Identity,
        ip: str,
        ua: str,
        role: Role,
        session: str,
        tags: dict[str, str] | None = None,
        duration: int | None = SESSION_S,
        akid: str | None = None,
        error: tuple[str, str] | None = None,
    ) -> tuple[str, str]:
        """Log an sts:AssumeRole; returns (eventID, the new session's access key id)."""
        akid = akid or ids.access_key(rng)
        params: dict[str, Any] = {"roleArn": role.arn, "roleSessionName": session}
        if duration is not None:
            params["durationSeconds"] = duration
        if tags:
            params["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        rec = self._base(rng, ts, caller, "sts.amazonaws.com", "AssumeRole", ip, ua)
        rec["requestParameters"] = params
        if error:
            rec["errorCode"], rec["errorMessage"] = error
            rec["responseElements"] = None
        else:
            rec["responseElements"] = {
                "credentials": {
                    "accessKeyId": akid,
                    "sessionToken": ids.session_token(rng),
                    "expiration": sts_expiration(ts + (duration or SESSION_S)),
                },
                "assumedRoleUser": {
                    "assumedRoleId": f"{role.role_id}:{session}",
                    "arn": f"arn:aws:sts::{self.acct}:assumed-role/{role.name}/{session}",
                },
                **({"packedPolicySize": 4 + len(tags or {})} if tags else {}),
            }
        rec.update(
            requestID=ids.uuid4(rng),
            eventID=ids.uuid4(rng),
            readOnly=True,
            resources=[{"accountId": self.acct, "type": "AWS::IAM::Role", "ARN": role.arn}],
            eventType="AwsApiCall",
            managementEvent=True,
            recipientAccountId=self.acct,
            eventCategory="Management",
        )
        if "invokedBy" not in caller:
            rec["tlsDetails"] = self.tls(f"sts.{self.region}.amazonaws.com")
        return self.emit(rng, ts, rec), akid

    def s3_object(
        self,
        rng: random.Random,
        ts: int,
        ident: Identity,
        ip: str,
        ua: str,
        name: str,
        key: str,
        presigned: bool = False,
        error: tuple[str, str] | None = None,
    ) -> str:
        """GetObject / PutObject / HeadObject / DeleteObject on the tenant-data bucket."""
        rec = self._base(rng, ts, ident, "s3.amazonaws.com", name, ip, ua, "1.10")
        rec["requestParameters"] = {"bucketName": BUCKET, "Host": self.s3_host, "key": key}
        write = name in ("PutObject", "DeleteObject")
        if error:
            rec["errorCode"], rec["errorMessage"] = error
            rec["responseElements"] = None
        elif name == "PutObject":
            rec["responseElements"] = {
                "x-amz-server-side-encryption": "aws:kms",
                "x-amz-server-side-encryption-aws-kms-key-id": (
                    f"arn:aws:kms:{self.region}:{self.acct}:key/5e1c2b7a-0f3d-4c8e-9a61-3b2d7f4e8c10"
                ),
            }
        else:
            rec["responseElements"] = None
        out = 0 if (write or error) else rng.randrange(900, 400_000)
        rec["additionalEventData"] = {
            "SignatureVersion": "SigV4",
            "CipherSuite": _CIPHER,
            "bytesTransferredIn": rng.randrange(900, 250_000) if name == "PutObject" else 0,
            "AuthenticationMethod": "QueryString" if presigned else "AuthHeader",
            "x-amz-id-2": ids.b64(rng, 76),
            "bytesTransferredOut": out,
        }
        rec.update(
            requestID=ids.s3_request_id(rng),
            eventID=ids.uuid4(rng),
            readOnly=not write,
            resources=[
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{BUCKET}/{key}"},
                self._bucket_res,
            ],
            eventType="AwsApiCall",
            managementEvent=False,
            recipientAccountId=self.acct,
            eventCategory="Data",
            tlsDetails=self.tls(self.s3_host),
        )
        return self.emit(rng, ts, rec)

    def s3_list(
        self,
        rng: random.Random,
        ts: int,
        ident: Identity,
        ip: str,
        ua: str,
        prefix: str,
        error: tuple[str, str] | None = None,
    ) -> str:
        rec = self._base(rng, ts, ident, "s3.amazonaws.com", "ListObjects", ip, ua, "1.10")
        rec["requestParameters"] = {
            "list-type": "2",
            "bucketName": BUCKET,
            "encoding-type": "url",
            "prefix": prefix,
            "Host": self.s3_host,
        }
        if error:
            rec["errorCode"], rec["errorMessage"] = error
        rec["responseElements"] = None
        rec["additionalEventData"] = {
            "SignatureVersion": "SigV4",
            "CipherSuite": _CIPHER,
            "bytesTransferredIn": 0,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": ids.b64(rng, 76),
            "bytesTransferredOut": 0 if error else rng.randrange(400, 60_000),
        }
        rec.update(
            requestID=ids.s3_request_id(rng),
            eventID=ids.uuid4(rng),
            readOnly=True,
            resources=[
                {"type": "AWS::S3::Object", "ARNPrefix": f"arn:aws:s3:::{BUCKET}/{prefix}"},
                self._bucket_res,
            ],
            eventType="AwsApiCall",
            managementEvent=False,
            recipientAccountId=self.acct,
            eventCategory="Data",
            tlsDetails=self.tls(self.s3_host),
        )
        return self.emit(rng, ts, rec)

    def dynamodb(
        self,
        rng: random.Random,
        ts: int,
        ident: Identity,
        ip: str,
        ua: str,
        name: str,
        tenant: str,
        sk: str | None,
        error: tuple[str, str] | None = None,
    ) -> str:
        """GetItem / PutItem / UpdateItem / Query on the tenant-data table.

        CloudTrail logs the primary key of item operations; for Query we log the partition key
        under ``key`` too (beside the key condition), so one target-tenant rule covers all four.
        """
        key: dict[str, Any] = {"pk": {"S": f"TENANT#{tenant}"}}
        params: dict[str, Any] = {"tableName": TABLE}
        if name == "Query":
            params["keyConditionExpression"] = "pk = :pk AND begins_with(sk, :sk)"
            params["key"] = key
            params["limit"] = 50
        else:
            key["sk"] = {"S": sk or "PROFILE"}
            params["key"] = key
            if name == "GetItem":
                params["consistentRead"] = False
            else:
                params["returnValues"] = "NONE"
        write = name in ("PutItem", "UpdateItem", "DeleteItem")
        rec = self._base(rng, ts, ident, "dynamodb.amazonaws.com", name, ip, ua, "1.09")
        rec["requestParameters"] = params
        if error:
            rec["errorCode"], rec["errorMessage"] = error
        rec["responseElements"] = None
        rec.update(
            requestID=ids.ddb_request_id(rng),
            eventID=ids.uuid4(rng),
            readOnly=not write,
            resources=self._table_res,
            eventType="AwsApiCall",
            managementEvent=False,
            recipientAccountId=self.acct,
            eventCategory="Data",
            tlsDetails=self.tls(f"dynamodb.{self.region}.amazonaws.com"),
        )
        return self.emit(rng, ts, rec)

    def management(
        self,
        rng: random.Random,
        ts: int,
        ident: Identity,
        ip: str,
        ua: str,
        source: str,
        name: str,
        params: dict[str, Any] | None,
        response: dict[str, Any] | None = None,
        read_only: bool = True,
        resources: list[dict[str, str]] | None = None,
        error: tuple[str, str] | None = None,
        event_type: str = "AwsApiCall",
        extra: dict[str, Any] | None = None,
        version: str = "1.09",
    ) -> str:
        rec = self._base(rng, ts, ident, source, name, ip, ua, version)
        rec["requestParameters"] = params
        if error:
            rec["errorCode"], rec["errorMessage"] = error
        rec["responseElements"] = None if error else response
        if extra:
            rec["additionalEventData"] = extra
        rec["requestID"] = ids.uuid4(rng)
        rec["eventID"] = ids.uuid4(rng)
        rec["readOnly"] = read_only
        if resources:
            rec["resources"] = resources
        rec.update(
            eventType=event_type,
            managementEvent=True,
            recipientAccountId=self.acct,
            eventCategory="Management",
        )
        if not ip.endswith(".amazonaws.com") and ip != "AWS Internal":
            host = source if source != "signin.amazonaws.com" else "signin.aws.amazon.com"
            rec["tlsDetails"] = self.tls(
                host.replace(".amazonaws.com", f".{self.region}.amazonaws.com")
            )
        return self.emit(rng, ts, rec)


__all__ = ["LAMBDA_UA", "CloudTrail", "Identity"]
