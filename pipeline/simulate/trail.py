"""What every simulated CloudTrail record shares: a session's identity, the record's envelope, and
delivery to the accounts that receive it, with the record's ground truth.

A session's ``userIdentity`` dict is built once and shared by all of its records (orjson encodes
it each time), so the per-record work is one small dict and a few RNG draws.

Where the caller and the resource live in different accounts of the organisation, AWS delivers
the event to both: the caller's account gets it with the full identity, the owner's with the
caller reduced to ``{"type": "AWSAccount", "principalId", "accountId"}``; both copies share a
``sharedEventID`` and carry their own ``eventID`` and ``recipientAccountId``.

Every record goes to the sink with its true actor and target tenant (the ground truth): the actor
is the tenant of the session that made the call (known when the session is created), the target
the tenant whose resource it touched, whatever the record itself says.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.simulate import clock, ids
from pipeline.simulate.world import Role, World
from pipeline.simulate.writer import Sink, Truth

Identity = dict[str, Any]
CIPHER = "TLS_AES_128_GCM_SHA256"


class Trail:
    def __init__(self, world: World, sink: Sink) -> None:
        self.world = world
        self.style = world.style
        self.sink = sink
        spec = world.spec
        self.acct = spec.account
        self.region = spec.region
        self._tls: dict[str, dict[str, str]] = {}
        self._bucket_res: dict[str, dict[str, str]] = {}
        self._table_res: dict[str, list[dict[str, str]]] = {}
        self._service_ids: dict[tuple[str, int], Identity] = {}
        # The ground truth of who acts: access key id -> the tenant its session acts for.
        self.tenant_of_key: dict[str, str] = {}

    def tls(self, host: str) -> dict[str, str]:
        got = self._tls.get(host)
        if got is None:
            got = self._tls[host] = {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": CIPHER,
                "clientProvidedHostHeader": host,
            }
        return got

    @staticmethod
    def lag(rng: random.Random) -> int:
        # CloudTrail delivers within about 5 minutes on average, now and then up to 15.
        return rng.randrange(30, 420) if rng.random() < 0.97 else rng.randrange(420, 900)

    def emit(self, rng: random.Random, ts: int, rec: dict[str, Any], truth: Truth) -> str:
        self.sink.cloudtrail(ts, ts + self.lag(rng), rec, truth)
        return str(rec["eventID"])

    def actor_of(self, ident: Identity) -> str | None:
        key = ident.get("accessKeyId")
        return self.tenant_of_key.get(key) if key else None

    def deliver(
        self,
        rng: random.Random,
        ts: int,
        rec: dict[str, Any],
        ident: Identity,
        owner: str,
        target: str | None,
    ) -> list[str]:
        """Emit ``rec`` (its ``recipientAccountId`` already the owner's) to every account of
        the organisation that receives it; returns the event ids."""
        truth = (self.actor_of(ident), target)
        caller = ident.get("accountId")
        if caller is None or caller == owner or not self.style.in_org(caller):
            return [self.emit(rng, ts, rec, truth)]
        shared = ids.uuid4(rng)
        mine = {**rec, "recipientAccountId": caller, "sharedEventID": shared}
        theirs = {
            **rec,
            "userIdentity": {
                "type": "AWSAccount",
                "principalId": ident["principalId"],
                "accountId": caller,
            },
            "eventID": ids.uuid4(rng),
            "sharedEventID": shared,
        }
        return [self.emit(rng, ts, mine, truth), self.emit(rng, ts, theirs, truth)]

    # --- identities ---------------------------------------------------------------------------

    def assumed(
        self,
        role: Role,
        session: str,
        akid: str,
        created: int,
        mfa: bool = False,
        tenant: str | None = None,
    ) -> Identity:
        """The identity of a role session; ``tenant``: whom it acts for (the ground truth)."""
        if tenant is not None:
            self.tenant_of_key[akid] = tenant
        acct = role.account
        return {
            "type": "AssumedRole",
            "principalId": f"{role.role_id}:{session}",
            "arn": f"arn:aws:sts::{acct}:assumed-role/{role.name}/{session}",
            "accountId": acct,
            "accessKeyId": akid,
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": role.role_id,
                    "arn": role.arn,
                    "accountId": acct,
                    "userName": role.name,
                },
                "attributes": {
                    "creationDate": clock.iso(created),
                    "mfaAuthenticated": "true" if mfa else "false",
                },
            },
        }

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


__all__ = ["Identity", "Trail"]
