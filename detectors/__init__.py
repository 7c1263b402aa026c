"""Detectors: one module (or package) per detector and an explicit registry
(docs/ARCHITECTURE.md, "Detectors").

The registry maps each detector id (== its module name == the ``detector`` value of its findings
== its test file) to ``"module:Class"``. The other modules are what detectors share: the base
class (``base``), column and evidence helpers (``evidence``), which relationships and tickets
make an access legitimate (``rules``); a detector's own parts sit in its package
(``tenant_switching/``). Nothing is imported until a detector is asked for, so
``import detectors`` stays cheap: no pandas, no scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detectors.base import Detector
    from pipeline.config import Config

REGISTRY: dict[str, str] = {
    "cross_tenant_access": "detectors.cross_tenant_access:CrossTenantAccess",
    "tenant_switching": "detectors.tenant_switching:TenantSwitching",
    "authz_failure_spike": "detectors.authz_failure_spike:AuthzFailureSpike",
}


def load(detector_id: str) -> type[Detector]:
    """The detector class registered under ``detector_id``."""
    module, _, name = REGISTRY[detector_id].partition(":")
    cls: type[Detector] = getattr(importlib.import_module(module), name)
    return cls


def from_config(cfg: Config, only: tuple[str, ...] | None = None) -> dict[str, Detector]:
    """Every enabled detector (or those in ``only``), built from ``cfg.detectors`` and
    ``cfg.relationships``.

    Validates every ``[detectors.<id>]`` table first, so a bad key fails the run before any data
    is read: an unknown detector id or setting, or a wrong type, raises ``ConfigError``. Then
    reads the break-glass tickets ``cfg`` names in files or tables, once for every detector
    (nothing, if the caller resolved ``cfg`` already: ``pipeline.tickets.resolve``).
    """
    from pipeline import tickets
    from pipeline.errors import ConfigError

    unknown = sorted(set(cfg.detectors) - set(REGISTRY))
    if unknown:
        raise ConfigError(f"detectors.{unknown[0]}: unknown detector; valid: {', '.join(REGISTRY)}")
    bad = sorted(set(only or ()) - set(REGISTRY))
    if bad:
        raise ConfigError(f"unknown detector {bad[0]!r}; valid: {', '.join(REGISTRY)}")
    chosen: dict[str, tuple[type[Detector], Any]] = {}
    for detector_id in REGISTRY:
        cls = load(detector_id)
        raw: Any = cfg.detectors.get(detector_id, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"detectors.{detector_id}: expected a table")
        settings = cls.parse_settings(raw)
        if (only is None and settings.enabled) or (only is not None and detector_id in only):
            chosen[detector_id] = (cls, settings)
    relationships = tickets.resolve(cfg).relationships
    return {d: cls(settings, relationships) for d, (cls, settings) in chosen.items()}
