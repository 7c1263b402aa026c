"""Small EVENTS-shaped tables from a few keyword arguments (for detector tests): the helpers
``detectors.testing`` gives plugin authors too.

``event(actor_tenant="t0001", target_tenant="t0002")`` is one row with sensible defaults (an
assumed-role S3 read, success, 2026-11-16 10:00 UTC); ``events(rows)`` makes an Arrow table of
the pinned schema, numbering event ids in order so that tests are deterministic.
"""

from __future__ import annotations

from detectors.testing import ACCOUNT, T0, api, event, events, role

__all__ = ["ACCOUNT", "T0", "api", "event", "events", "role"]
