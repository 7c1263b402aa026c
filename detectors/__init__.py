"""Detectors: one module (or package) per detector, an explicit registry, and plugins
(docs/ARCHITECTURE.md, "Detectors").

``BUILTIN`` maps each of the project's detector ids (== its module name == the ``detector`` value
of its findings == its test file) to ``"module:Class"``. Other packages add detectors through the
``tenantwatch.detectors`` entry point group (``id = "module:Class"``); ``REGISTRY`` is both,
built-ins first. A plugin whose id is taken, whose module does not import or whose object is no
detector of that id is left out of the runs and reported (``unavailable``, ``tenantwatch
detectors list``, the detect summary): the others run. The other modules are what detectors share:
the base class (``base``), column and evidence helpers (``evidence``), which relationships and
tickets make an access legitimate (``rules``), the contract any detector can be checked against
(``testing``); a detector's own parts sit in its package (``tenant_switching/``). Nothing is
imported until a detector is asked for, so ``import detectors`` stays cheap: no pandas, no
scikit-learn, and entry points are read on first use of the registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detectors.base import Detector
    from pipeline.config import Config

BUILTIN: dict[str, str] = {
    "cross_tenant_access": "detectors.cross_tenant_access:CrossTenantAccess",
    "tenant_switching": "detectors.tenant_switching:TenantSwitching",
    "authz_failure_spike": "detectors.authz_failure_spike:AuthzFailureSpike",
    "authorizer_cache": "detectors.authorizer_cache:AuthorizerCache",
    "sigma": "detectors.sigma:SigmaRules",
    "residency": "detectors.residency:Residency",
    "token_replay": "detectors.token_replay:TokenReplay",
    "access_pattern": "detectors.access_pattern:AccessPattern",
}
ENTRY_POINTS = "tenantwatch.detectors"


@dataclass(frozen=True)
class Registered:
    """A detector the registry knows: where it comes from (``built-in`` or the distribution
    that declares its entry point) and that distribution's version."""

    id: str
    target: str  # "module:Class"
    origin: str
    version: str


@cache
def _registered() -> tuple[dict[str, Registered], dict[str, str]]:
    """Every detector, built-ins first, and the plugins left out with why (read once)."""
    from importlib.metadata import entry_points, version

    here = version("tenantwatch") if _installed("tenantwatch") else "dev"
    found = {d: Registered(d, t, "built-in", here) for d, t in BUILTIN.items()}
    unavailable: dict[str, str] = {}
    for ep in sorted(entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        ver = ep.dist.version if ep.dist is not None else ""
        if ep.name in found:
            unavailable[f"{ep.name} ({dist})"] = (
                f"the id {ep.name!r} is taken by {found[ep.name].origin}"
            )
            continue
        if ":" not in ep.value:
            unavailable[ep.name] = f"{dist}: entry point {ep.value!r} is not module:Class"
            continue
        found[ep.name] = Registered(ep.name, ep.value, dist, ver)
    return found, unavailable


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def registered() -> dict[str, Registered]:
    """Every detector the registry knows, built-ins first (importing none of them)."""
    return dict(_registered()[0])


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":  # id -> "module:Class", built-ins first, then plugins by id
        return {d: r.target for d, r in _registered()[0].items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


REGISTRY: dict[str, str]  # (computed on first use: see ``__getattr__``)


class PluginError(Exception):
    """A plugin detector that cannot be loaded: the message says why."""


def load(detector_id: str) -> type[Detector]:
    """The detector class registered under ``detector_id`` (a plugin's checked: it must be a
    ``Detector`` whose ``id`` is the one it is registered under)."""
    from detectors.base import Detector

    entry = _registered()[0][detector_id]
    module, _, name = entry.target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        if entry.origin == "built-in":
            raise
        raise PluginError(
            f"{entry.origin}: {entry.target} does not load ({type(exc).__name__}: {exc})"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, Detector)):
        raise PluginError(f"{entry.origin}: {entry.target} is not a Detector subclass")
    if getattr(obj, "id", None) != detector_id:
        raise PluginError(
            f"{entry.origin}: {entry.target} has id {getattr(obj, 'id', None)!r}, "
            f"registered as {detector_id!r}"
        )
    return obj


def unavailable() -> dict[str, str]:
    """The plugins left out of the runs, each with why: an id taken, an entry point that is not
    ``module:Class``, a module that does not import, an object that is no detector of its id."""
    out = dict(_registered()[1])
    for detector_id, entry in _registered()[0].items():
        if entry.origin == "built-in":
            continue
        try:
            load(detector_id)
        except PluginError as exc:
            out[detector_id] = str(exc)
    return out


def from_config(cfg: Config, only: tuple[str, ...] | None = None) -> dict[str, Detector]:
    """Every enabled detector (or those in ``only``), built from ``cfg.detectors`` and
    ``cfg.relationships``.

    Validates every ``[detectors.<id>]`` table first, so a bad key fails the run before any data
    is read: an unknown detector id or setting, or a wrong type, raises ``ConfigError``. A plugin
    that does not load (``unavailable``) is left out, whatever its table says. Then reads the
    break-glass tickets ``cfg`` names in files or tables, once for every detector (nothing, if
    the caller resolved ``cfg`` already: ``pipeline.tickets.resolve``).
    """
    from pipeline import tickets
    from pipeline.errors import ConfigError

    known = _registered()[0]
    names = ", ".join(known)
    unknown = sorted(set(cfg.detectors) - set(known))
    if unknown:
        raise ConfigError(f"detectors.{unknown[0]}: unknown detector; valid: {names}")
    bad = sorted(set(only or ()) - set(known))
    if bad:
        raise ConfigError(f"unknown detector {bad[0]!r}; valid: {names}")
    chosen: dict[str, tuple[type[Detector], Any]] = {}
    for detector_id in known:
        try:
            cls = load(detector_id)
        except PluginError:
            continue  # reported by ``unavailable``; the others run
        raw: Any = cfg.detectors.get(detector_id, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"detectors.{detector_id}: expected a table")
        settings = cls.parse_settings(raw)
        if (only is None and settings.enabled) or (only is not None and detector_id in only):
            chosen[detector_id] = (cls, settings)
    relationships = tickets.resolve(cfg).relationships
    # What some detectors are built with beyond their settings and the relationships.
    inputs: dict[str, Callable[[], dict[str, Any]]] = {
        "sigma": lambda: sigma_inputs(cfg),  # the rules compiled, the accounts looked up
        "access_pattern": lambda: {"classification": cfg.classification},
        "residency": lambda: {"tenants": cfg.tenants, "classification": cfg.classification},
    }
    return {
        d: cls(settings, relationships, **(inputs[d]() if d in inputs else {}))
        for d, (cls, settings) in chosen.items()
    }


def sigma_inputs(cfg: Config) -> dict[str, Any]:
    """What the ``sigma`` detector is built with: ``[sigma]``'s rules compiled (read from their
    folders and prefixes once), and the accounts of ``[sigma] account_lookup``."""
    from detectors.sigma.rules import load_cached
    from pipeline.errors import ConfigError

    accounts: dict[str, str] = {}
    if cfg.sigma.account_lookup:
        from pipeline.ingest.lookups import load_lookups

        names = [lk.name for lk in cfg.tenancy.lookup]
        if cfg.sigma.account_lookup not in names:
            raise ConfigError(
                f"sigma.account_lookup: no [[tenancy.lookup]] named {cfg.sigma.account_lookup!r}"
                f" (there are: {', '.join(names) or 'none'})"
            )
        accounts = load_lookups(cfg)[cfg.sigma.account_lookup].as_dict()
    try:
        rules = load_cached(cfg.sigma.rules, pack=cfg.sigma.pack)
    except FileNotFoundError as exc:
        raise ConfigError(f"sigma.rules: {exc}") from None
    return {"rules": rules, "accounts": accounts}
