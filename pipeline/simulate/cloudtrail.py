"""CloudTrail records, shaped like the ones AWS writes: STS, S3 and DynamoDB data events, and
management calls (``trail.Trail`` delivers them)."""

from __future__ import annotations

import random
import time
from typing import Any

from pipeline.simulate import ids
from pipeline.simulate.regions import data_region
from pipeline.simulate.trail import CIPHER, Identity, Trail
from pipeline.simulate.world import SESSION_S, Role

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


class CloudTrail(Trail):
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
    ) -> tuple[list[str], str]:
        """Log an sts:AssumeRole; returns (its eventIDs, the new session's access key id)."""
        akid = akid or ids.access_key(rng)
        acct = role.account
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
                    "arn": f"arn:aws:sts::{acct}:assumed-role/{role.name}/{session}",
                },
                **({"packedPolicySize": 4 + len(tags or {})} if tags else {}),
            }
        rec.update(
            requestID=ids.uuid4(rng),
            eventID=ids.uuid4(rng),
            readOnly=True,
            resources=[{"accountId": acct, "type": "AWS::IAM::Role", "ARN": role.arn}],
            eventType="AwsApiCall",
            managementEvent=True,
            recipientAccountId=acct,
            eventCategory="Management",
        )
        if "invokedBy" not in caller:
            rec["tlsDetails"] = self.tls(f"sts.{self.region}.amazonaws.com")
        return self.deliver(rng, ts, rec, caller, acct, self.style.role_target(role)), akid

    def _bucket(self, tenant: str, region: str) -> tuple[str, str, str, dict[str, str]]:
        """(bucket, owner account, S3 host in ``region``, bucket resource) of the tenant's
        data."""
        bucket = self.style.bucket(tenant)
        res = self._bucket_res.get(bucket)
        if res is None:
            owner = self.style.account_of(tenant)
            res = self._bucket_res[bucket] = {
                "accountId": owner,
                "type": "AWS::S3::Bucket",
                "ARN": f"arn:aws:s3:::{bucket}",
            }
        return bucket, res["accountId"], f"{bucket}.s3.{region}.amazonaws.com", res

    def s3_object(
        self,
        rng: random.Random,
        ts: int,
        ident: Identity,
        ip: str,
        ua: str,
        name: str,
        tenant: str,
        rel: str,
        presigned: bool = False,
        error: tuple[str, str] | None = None,
        region: str | None = None,
    ) -> list[str]:
        """GetObject / PutObject / HeadObject / DeleteObject on ``rel`` in the tenant's data, in
        ``region`` (default: where the tenant's data is, ``regions.data_region``)."""
        where = region or data_region(self.world, tenant, ts)
        bucket, owner, host, bucket_res = self._bucket(tenant, where)
        key = self.style.object_key(tenant, rel)
        rec = self._base(rng, ts, ident, "s3.amazonaws.com", name, ip, ua, "1.10")
        rec["awsRegion"] = where
        rec["requestParameters"] = {"bucketName": bucket, "Host": host, "key": key}
        write = name in ("PutObject", "DeleteObject")
        if error:
            rec["errorCode"], rec["errorMessage"] = error
            rec["responseElements"] = None
        elif name == "PutObject":
            rec["responseElements"] = {
                "x-amz-server-side-encryption": "aws:kms",
                "x-amz-server-side-encryption-aws-kms-key-id": (
                    f"arn:aws:kms:{where}:{owner}:key/5e1c2b7a-0f3d-4c8e-9a61-3b2d7f4e8c10"
                ),
            }
        else:
            rec["responseElements"] = None
        out = 0 if (write or error) else rng.randrange(900, 400_000)
        rec["additionalEventData"] = {
            "SignatureVersion": "SigV4",
            "CipherSuite": CIPHER,
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
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                bucket_res,
            ],
            eventType="AwsApiCall",
            managementEvent=False,
            recipientAccountId=owner,
            eventCategory="Data",
            tlsDetails=self.tls(host),
        )
        return self.deliver(rng, ts, rec, ident, owner, tenant)

    def s3_list(
        self,
        rng: random.Random,
        ts: int,
        ident: Identity,
        ip: str,
        ua: str,
        tenant: str,
        rel: str,
        error: tuple[str, str] | None = None,
        region: str | None = None,
    ) -> list[str]:
        """ListObjects under ``rel`` (a prefix) in the tenant's data (in ``region``, as
        ``s3_object``)."""
        where = region or data_region(self.world, tenant, ts)
        bucket, owner, host, bucket_res = self._bucket(tenant, where)
        prefix = self.style.object_key(tenant, rel)
        rec = self._base(rng, ts, ident, "s3.amazonaws.com", "ListObjects", ip, ua, "1.10")
        rec["awsRegion"] = where
        rec["requestParameters"] = {
            "list-type": "2",
            "bucketName": bucket,
            "encoding-type": "url",
            "prefix": prefix,
            "Host": host,
        }
        if error:
            rec["errorCode"], rec["errorMessage"] = error
        rec["responseElements"] = None
        rec["additionalEventData"] = {
            "SignatureVersion": "SigV4",
            "CipherSuite": CIPHER,
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
                {"type": "AWS::S3::Object", "ARNPrefix": f"arn:aws:s3:::{bucket}/{prefix}"},
                bucket_res,
            ],
            eventType="AwsApiCall",
            managementEvent=False,
            recipientAccountId=owner,
            eventCategory="Data",
            tlsDetails=self.tls(host),
        )
        return self.deliver(rng, ts, rec, ident, owner, tenant)

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
        region: str | None = None,
    ) -> list[str]:
        """GetItem / PutItem / UpdateItem / Query on the tenant's items, in ``region`` (default:
        where the tenant's data is; the table is a global table, with a replica in each region).

        CloudTrail logs the primary key of item operations; for Query we log the partition key
        under ``key`` too (beside the key condition), so one target-tenant rule covers all four.
        A caller in another account names the table by its ARN, as the SDK must.
        """
        where = region or data_region(self.world, tenant, ts)
        table = self.style.table(tenant)
        owner = self.style.account_of(tenant)
        arn = f"arn:aws:dynamodb:{where}:{owner}:table/{table}"
        resources = self._table_res.get(arn)
        if resources is None:
            resources = self._table_res[arn] = [
                {"accountId": owner, "type": "AWS::DynamoDB::Table", "ARN": arn}
            ]
        query = name == "Query"
        key = self.style.item_key(tenant, None if query else sk or "PROFILE")
        params: dict[str, Any] = {"tableName": table if ident.get("accountId") == owner else arn}
        if query:
            params["keyConditionExpression"] = "pk = :pk AND begins_with(sk, :sk)"
            params["key"] = key
            params["limit"] = 50
        else:
            params["key"] = key
            if name == "GetItem":
                params["consistentRead"] = False
            else:
                params["returnValues"] = "NONE"
        write = name in ("PutItem", "UpdateItem", "DeleteItem")
        rec = self._base(rng, ts, ident, "dynamodb.amazonaws.com", name, ip, ua, "1.09")
        rec["awsRegion"] = where
        rec["requestParameters"] = params
        if error:
            rec["errorCode"], rec["errorMessage"] = error
        rec["responseElements"] = None
        rec.update(
            requestID=ids.ddb_request_id(rng),
            eventID=ids.uuid4(rng),
            readOnly=not write,
            resources=resources,
            eventType="AwsApiCall",
            managementEvent=False,
            recipientAccountId=owner,
            eventCategory="Data",
            tlsDetails=self.tls(f"dynamodb.{where}.amazonaws.com"),
        )
        return self.deliver(rng, ts, rec, ident, owner, tenant)

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
        # The platform's own operations: no tenant acts, no tenant's resource is touched.
        return self.emit(rng, ts, rec, (None, None))


__all__ = ["CloudTrail", "Identity", "sts_expiration"]
