"""What a secret becomes: ``redacted:sha256:<16 hex>``, the same wherever it was found.

The same secret gives the same fingerprint in a JSON value, a URL parameter and a quarantined
line, so an analyst can see that two records carried it without seeing it.
"""

from __future__ import annotations

import hashlib
import re

FINGERPRINT = re.compile(r"redacted:sha256:[0-9a-f]{16}")
FINGERPRINT_BYTES = re.compile(FINGERPRINT.pattern.encode())


def fingerprint(secret: str | bytes) -> str:
    data = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    return "redacted:sha256:" + hashlib.sha256(data).hexdigest()[:16]
