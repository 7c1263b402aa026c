"""Sigma rules read from folders, files or ``s3://`` prefixes, compiled to SQL once per run.

``load`` reads every ``*.yml``/``*.yaml`` under the given places, parses each file on its own (a
file that is no YAML is reported with its line and skipped, the others load), resolves
correlation rules' references across all files, and compiles each rule with the lake backend
(``detectors.sigma.backend``). A rule is skipped, with its reason, when pySigma refuses it (an
unknown modifier, a bad condition), when its log source is not one tenantwatch has, when it
names a field CloudTrail records do not have, or when the backend cannot express it (a
timestamp-part modifier, a correlation kind the dialect lacks). ``RuleSet.skipped`` lists them:
``tenantwatch sigma check`` prints them, and the detector runs the others.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from detectors.sigma.fields import UnsupportedRule, check_field, rule_fields, source_of

Dialect = Literal["duckdb", "athena"]
PACK_ENV = "TENANTWATCH_SIGMA_PACK"
PACK = "pack"  # in ``[sigma] rules``: the project's own rule pack
LEVELS = {
    "informational": "info",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}
_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class Compiled:
    """One rule tenantwatch runs: what its findings say, and the SQL that finds them."""

    id: str
    name: str
    title: str
    severity: str
    tags: tuple[str, ...]
    attack: tuple[str, ...]  # the ATT&CK tags (``attack.t1562.008``, ``attack.persistence``)
    path: str
    kind: str  # "rule", or the correlation type: "event_count", "value_count", "temporal"
    sql: str
    description: str = ""
    fields: tuple[str, ...] = ()  # every field it names (to know what the view must add)


@dataclass(frozen=True)
class Skipped:
    path: str
    title: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.title + ': ' if self.title else ''}{self.reason}"


@dataclass
class RuleSet:
    rules: list[Compiled] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0

    def find(self, ref: str) -> Compiled | None:
        """A rule by id, name, title (case-insensitive) or its file's name without ``.yml``
        (when the file holds that one rule)."""
        ref_l = ref.lower()
        for r in self.rules:
            if ref_l in (r.id.lower(), r.name.lower(), r.title.lower()):
                return r
        by_file = [r for r in self.rules if Path(r.path).stem.lower() == ref_l]
        return by_file[0] if len(by_file) == 1 else None


def pack_path() -> Path | None:
    """Where the project's rule pack is: ``$TENANTWATCH_SIGMA_PACK``, the ``rules/`` folder of a
    source checkout (``make``, an editable install), or the function image's copy."""
    here = os.environ.get(PACK_ENV, "")
    candidates = [Path(here)] if here else []
    candidates.append(Path(__file__).resolve().parents[2] / "rules")
    task = os.environ.get("LAMBDA_TASK_ROOT", "")
    if task:
        candidates.append(Path(task) / "tenantwatch-rules")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@functools.cache
def pack() -> RuleSet:
    """The project's rule pack alone, compiled once per process (empty if not installed)."""
    return load([], pack=True)


def places(rules: Sequence[str], pack: bool) -> list[str]:
    """The configured places, with the pack first when it is wanted and installed."""
    out = [str(p) for p in rules if str(p) != PACK]
    if pack or PACK in rules:
        found = pack_path()
        if found is not None:
            out.insert(0, str(found))
    return out


def _read_all(place: str) -> list[tuple[str, str]]:
    """(path, text) of every rule file under ``place`` (a file, a folder or ``s3://``)."""
    if place.startswith("s3://"):
        from pipeline import aws

        bucket, _, prefix = place[len("s3://") :].partition("/")
        s3 = aws.client("s3")
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(_SUFFIXES):
                    body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    out.append((f"s3://{bucket}/{obj['Key']}", body.decode("utf-8", "replace")))
        return out
    p = Path(place)
    if p.is_file():
        return [(str(p), p.read_text(encoding="utf-8", errors="replace"))]
    if not p.is_dir():
        raise FileNotFoundError(f"no Sigma rules at {place}: not a file, folder or s3:// prefix")
    files = sorted(f for f in p.rglob("*") if f.suffix in _SUFFIXES and f.is_file())
    # A rule pack's test cases (``cases/``) are no rules.
    files = [f for f in files if "cases" not in f.relative_to(p).parts]
    return [(str(f), f.read_text(encoding="utf-8", errors="replace")) for f in files]


# Compiled rule sets of this process by what they were read from: a warm function compiles its
# rules once, and again only when a rule file changed (another mtime or size, another ETag).
_COMPILED: dict[tuple[Any, ...], RuleSet] = {}


def load_cached(rules: Sequence[str], *, pack: bool = True) -> RuleSet:
    """``load``, kept while the files it read are unchanged (one stat per file, one LIST per
    ``s3://`` prefix, to know)."""
    where = places(rules, pack)
    key = (tuple(where), _signature(where))
    found = _COMPILED.get(key)
    if found is None:
        found = load(rules, pack=pack)
        _COMPILED.clear()  # one configuration per process: keep only the latest
        _COMPILED[key] = found
    return found


def _signature(where: list[str]) -> tuple[Any, ...]:
    out: list[Any] = []
    for place in where:
        if place.startswith("s3://"):
            from pipeline import aws

            bucket, _, prefix = place[len("s3://") :].partition("/")
            pages = aws.client("s3").get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=bucket, Prefix=prefix):
                out += [(o["Key"], o.get("ETag")) for o in page.get("Contents", [])]
            continue
        p = Path(place)
        files = [p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else []
        for f in files:
            if f.suffix in _SUFFIXES:
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


def load(rules: Sequence[str], *, pack: bool = True, dialect: Dialect = "duckdb") -> RuleSet:
    """Every rule under ``rules`` (plus the pack), compiled for ``dialect``."""
    import yaml
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaRuleLocation

    out = RuleSet()
    collections = []
    for place in places(rules, pack):
        for path, text in _read_all(place):
            out.files += 1
            try:
                docs = [d for d in yaml.safe_load_all(text) if d is not None]
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = mark.line + 1 if mark is not None else None
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                out.skipped.append(Skipped(path, "", f"not YAML: {problem}", line))
                continue
            if any(not isinstance(d, dict) for d in docs):
                out.skipped.append(
                    Skipped(path, "", "not a Sigma rule: a YAML document that is no mapping")
                )
                continue
            loc = SigmaRuleLocation(Path(path)) if not path.startswith("s3://") else None
            try:
                coll = SigmaCollection.from_dicts(
                    docs, collect_errors=True, source=loc, resolve_references=False
                )
            except Exception as exc:
                out.skipped.append(Skipped(path, "", _why(exc)))
                continue
            for rule in coll:
                setattr(rule, "_tenantwatch_path", path)  # noqa: B010
            collections.append(coll)
    merged = SigmaCollection.merge(collections, resolve_references=False)
    merged.resolve_rule_references()
    _compile(merged, out, dialect)
    return out


def _why(exc: BaseException) -> str:
    text = str(exc.args[0]) if getattr(exc, "args", None) else str(exc)
    return f"{type(exc).__name__}: {text}".splitlines()[0][:300]


def _compile(collection: Any, out: RuleSet, dialect: Dialect) -> None:
    from sigma.correlations import SigmaCorrelationRule

    from detectors.sigma.backend import AthenaSQLBackend, LakeSQLBackend
    from detectors.sigma.fields import mapping_pipeline

    backend = (AthenaSQLBackend if dialect == "athena" else LakeSQLBackend)(mapping_pipeline())
    outputs = {id(r) for r in collection.get_output_rules()}
    broken: set[int] = set()
    for rule in collection:  # referenced rules come before the correlations naming them
        path = getattr(rule, "_tenantwatch_path", "")
        title = rule.title or ""
        try:
            if rule.errors:
                raise rule.errors[0]
            if isinstance(rule, SigmaCorrelationRule):
                bad = [r.rule for r in rule.rules or [] if id(r.rule) in broken]
                if bad:
                    raise UnsupportedRule(f"it names a rule that was skipped ({bad[0].title})")
                kind = str(rule.type.name).lower()
                fields: list[str] = [*(rule.group_by or [])]
                ref = getattr(rule.condition, "fieldref", None)
                fields += [ref] if isinstance(ref, str) else list(ref or [])
                queries = backend.convert_correlation_rule(rule)
            else:
                kind = "rule"
                source = source_of(rule.logsource)
                fields = [f for f in rule_fields(rule.detection) if f]
                for f in rule_fields(rule.detection):
                    check_field(f, source)
                queries = backend.convert_rule(rule)
        except Exception as exc:
            broken.add(id(rule))
            reason = str(exc) if isinstance(exc, UnsupportedRule) else _why(exc)
            line = getattr(getattr(exc, "source", None), "line", None)
            out.skipped.append(Skipped(path, title, reason, line))
            continue
        if id(rule) not in outputs:
            continue  # a rule only a correlation uses: no findings of its own
        if len(queries) != 1:
            out.skipped.append(Skipped(path, title, f"compiles to {len(queries)} queries"))
            continue
        tags = tuple(str(t) for t in rule.tags)
        out.rules.append(
            Compiled(
                id=str(rule.id or rule.name or title),
                name=str(rule.name or ""),
                title=title,
                severity=LEVELS.get(str(rule.level.name).lower() if rule.level else "", "medium"),
                tags=tags,
                attack=tuple(t for t in tags if t.lower().startswith("attack.")),
                path=path,
                kind=kind,
                sql=str(queries[0]),
                description=(rule.description or "").strip(),
                fields=tuple(fields),
            )
        )
