"""Which actors are AWS services acting for themselves: the one home of that rule.

CloudTrail names a service acting on its own behalf with ``userIdentity.type`` ``AWSService``
and ``invokedBy`` (``delivery.logs.amazonaws.com``); ingest makes that name the event's
``actor_principal``. Such a service's denials are a pipeline or platform setting failing (a log
delivery losing its bucket permission writes thousands of ``AccessDenied``), never a tenant's
user or an attacker: the detectors leave them out of their actor groups by default and
``pipeline.health`` counts them instead.

A role session whose call a service made for it (``sourceIPAddress`` ``athena.amazonaws.com``)
is still the role's: someone behind the session chose to make that call, so it stays an actor.
"""

from __future__ import annotations

import re

SERVICE_TYPE = "AWSService"
# ``s3.amazonaws.com``, ``delivery.logs.amazonaws.com``, ``logs.cn-north-1.amazonaws.com.cn``.
SERVICE_NAME = r"^[a-z0-9][a-z0-9.-]*\.amazonaws\.com(?:\.cn)?$"
_NAME = re.compile(SERVICE_NAME)


def is_service(actor_type: str | None, actor_principal: str | None) -> bool:
    """True when the actor is an AWS service principal, by its identity type or its name."""
    if actor_type == SERVICE_TYPE:
        return True
    return actor_principal is not None and _NAME.match(actor_principal) is not None
