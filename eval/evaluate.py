"""Tenant resolution and detection quality in every simulated world, over several seeds.

    .venv/bin/python eval/evaluate.py [--worlds pooled silo bridge] [--seeds 7 11 23]
                                      [--days 15] [--tenants 50] [--json]

For each world and seed: ``simulate`` it (the last day is the attack day), ``ingest`` its logs
into a temporary lake with the world's own ``tenantwatch.toml``, compare every event's actor and
target tenant with the world's ground truth (``truth.parquet``), run every detector on the
attack day with its usual history, and compare the findings with ``labels.json``.

Tenant resolution, per world (all seeds together):

- coverage: tenant-scoped events (the truth gives an actor or a target tenant) whose every side
  that the truth gives a tenant has one in the lake / tenant-scoped events. An event the lake
  does not hold (quarantined, say) counts as unresolved;
- wrong: events where the lake holds a tenant that differs from the truth's, on either side (a
  tenant where the truth has none is wrong too: tenantwatch must never guess).

How a finding is matched to a label (``matches``): it shares an event id with the label, or it
names the label's actor (or, for a tenant-level label, one of its tenants) and overlaps its time.

- recall of detector D: attack labels whose ``expected_detector`` is D that a finding of D
  matches / attack labels expecting D ("-" when no attack expects D: no target to meet);
- precision of D: findings of D above low severity (what pages someone) that match an attack
  label, of any scenario, / findings of D above low. A probe that both the switching and the
  failure-spike detectors catch is a true positive for both. Low findings (recorded, not
  paged) are counted separately;
- negatives: findings above low severity that match a labelled negative (must be none).

Paging (``eval/paging.py``): the day's findings are alerted hour by hour, as a scheduled
deployment would see them; per labelled attack, the pages it caused (goal: exactly one, plus an
escalation only where the severity rose), attacks wrongly merged with another label into one
incident (goal: none), and pages of labelled negatives (goal: none).

Targets: coverage >= 99 %, no wrong tenant, recall >= 0.95 and precision >= 0.9 per detector, no
labelled negative paged, every attack paged exactly once and none merged, in every world. The
exit code is 1 when one is missed. A world whose logs cannot be ingested with its configuration
is reported with the error and misses them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors import BUILTIN as REGISTRY  # the project's own: plugins bring their own labels
from eval.paging import Paging, replay, score_pages
from pipeline.config import load_config
from pipeline.detect import run_detect
from pipeline.errors import TenantwatchError
from pipeline.schema import SEVERITY_RANK as RANK
from pipeline.simulate import TRUTH_FILE, SimulationSpec, simulate

SLACK = timedelta(minutes=5)
WORLDS = ("pooled", "silo", "bridge")
COVERAGE_TARGET = 0.99
RECALL_TARGET, PRECISION_TARGET = 0.95, 0.9
LOG_FOLDERS = ("AWSLogs", "apigateway", "authorizer")


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def matches(finding: dict[str, Any], label: dict[str, Any]) -> bool:
    evidence = finding["evidence"]
    if isinstance(evidence, str):
        evidence = orjson.loads(evidence)
    ids = set(evidence.get("event_ids", ())) | set(evidence.get("request_ids", ()))
    if ids & set(label["event_ids"]):
        return True
    start, end = _ts(label["start"]), _ts(label["end"])
    if start is None or end is None or finding["first_seen"] is None:
        return False
    overlaps = finding["first_seen"] <= end + SLACK and finding["last_seen"] >= start - SLACK
    if not overlaps:
        return False
    if label["actor"] is not None:
        return finding["actor"] == label["actor"]
    return finding["actor"] is None and bool(set(finding["tenants"]) & set(label["tenants"]))


def score(findings: list[dict[str, Any]], labels: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per detector for one run (add them up over seeds)."""
    attacks = [lb for lb in labels if lb["kind"] == "attack"]
    negatives = [lb for lb in labels if lb["kind"] == "negative"]
    out: dict[str, Any] = {
        d: {"labels": 0, "found": 0, "paged": 0, "true": 0, "low": 0, "missed": [], "false": []}
        for d in REGISTRY
    }
    for lb in attacks:
        d = lb["expected_detector"]
        out[d]["labels"] += 1
        if any(f["detector"] == d and matches(f, lb) for f in findings):
            out[d]["found"] += 1
        else:
            out[d]["missed"].append(lb["id"])
    for f in findings:
        row = out[f["detector"]]
        if RANK[f["severity"]] <= RANK["low"]:
            row["low"] += 1
            continue
        row["paged"] += 1
        if any(matches(f, lb) for lb in attacks):
            row["true"] += 1
        else:
            row["false"].append(f"{f['severity']} {f['title']}")
    violations = []
    for lb in negatives:
        for f in findings:
            if RANK[f["severity"]] > RANK["low"] and matches(f, lb):
                violations.append(f"{lb['id']}: {f['detector']} {f['severity']} {f['title']}")
    out["negative_violations"] = violations
    return out


# --- tenant resolution against the ground truth -------------------------------------------------


@dataclass
class Resolution:
    events: int = 0  # in the truth
    in_lake: int = 0
    scoped: int = 0
    resolved: int = 0  # scoped, and every side the truth names has a tenant in the lake
    wrong: int = 0
    unresolved: Counter[str] = field(default_factory=Counter)  # "source action side" -> events
    wrong_examples: list[str] = field(default_factory=list)

    def add(self, other: Resolution) -> None:
        for k in ("events", "in_lake", "scoped", "resolved", "wrong"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.unresolved.update(other.unresolved)
        self.wrong_examples += other.wrong_examples[: max(0, 5 - len(self.wrong_examples))]

    @property
    def coverage(self) -> float:
        return self.resolved / self.scoped if self.scoped else 1.0


Held = dict[tuple[str, str], dict[str, Any]]


def lake_tenants(lake: str) -> Held:
    """(source, event id) -> the lake's action and tenants of every event."""
    from pipeline.lake import read_events

    cols = ["source", "event_id", "action", "actor_tenant", "target_tenant"]
    return {(r["source"], r["event_id"]): r for r in read_events(lake, columns=cols).to_pylist()}


def resolution(held: Held, truth_file: Path) -> Resolution:
    """The lake's tenants of every event beside the truth's."""
    out = Resolution()
    for t in pq.read_table(truth_file).to_pylist():
        out.events += 1
        got = held.get((t["source"], t["event_id"]))
        out.in_lake += got is not None
        sides = (("actor", t["actor_tenant"]), ("target", t["target_tenant"]))
        if got is not None:
            bad = [
                f"{side} {got[f'{side}_tenant']} (truth {want})"
                for side, want in sides
                if got[f"{side}_tenant"] is not None and got[f"{side}_tenant"] != want
            ]
            if bad:
                out.wrong += 1
                if len(out.wrong_examples) < 5:
                    where = f"{t['source']} {got['action']} {t['event_id']}"
                    out.wrong_examples.append(f"{where}: {', '.join(bad)}")
        if not t["tenant_scoped"]:
            continue
        out.scoped += 1
        missing = [
            side
            for side, want in sides
            if want is not None and (got is None or not got[f"{side}_tenant"])
        ]
        if not missing:
            out.resolved += 1
        else:
            action = got["action"] if got is not None else "(not in the lake)"
            out.unresolved[f"{t['source']} {action}: {'+'.join(missing)}"] += 1
    return out


# --- one world and seed ------------------------------------------------------------------------


@dataclass
class Run:
    resolution: Resolution
    detection: dict[str, Any] | None  # score(); None when the logs could not be ingested
    error: str = ""
    paging: Paging | None = None


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_one(world: str, seed: int, days: int, tenants: int, workdir: Path) -> Run:
    logs, lake = workdir / f"logs-{world}-{seed}", workdir / f"lake-{world}-{seed}"
    # No CloudTrail digests: nothing here reads them, and the silo world would write ~18,000.
    spec = SimulationSpec(seed=seed, days=days, tenants=tenants, world=world, digests=False)
    try:
        simulate(logs, spec)
        return _score(spec, logs, lake)
    finally:  # a silo world is tens of thousands of files: gone before the next one
        shutil.rmtree(logs, ignore_errors=True)
        shutil.rmtree(lake, ignore_errors=True)


def _score(spec: SimulationSpec, logs: Path, lake: Path) -> Run:
    from pipeline.ingest.run import ingest

    cfg = load_config(logs / "tenantwatch.toml", environ={})
    try:
        ingest([str(logs / f) for f in LOG_FOLDERS], str(lake), cfg)
    except Exception as exc:  # any failure is this world's result: reported, not raised
        kind = "" if isinstance(exc, TenantwatchError) else f"{type(exc).__name__}: "
        return Run(resolution({}, logs / TRUTH_FILE), None, f"ingest failed: {kind}{exc}")
    res = resolution(lake_tenants(str(lake)), logs / TRUTH_FILE)
    labels = orjson.loads((logs / "labels.json").read_bytes())
    day = spec.attack_day
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    result = run_detect(str(lake), cfg, since, since + timedelta(days=1), write=False)
    error = f"detectors failed: {result.summary['failed']}" if result.summary["failed"] else ""
    findings = result.findings.to_pylist()
    replay(str(lake), cfg, result.findings, since)
    paging = score_pages(str(lake), cfg, findings, labels, matches)
    return Run(res, score(findings, labels), error, paging)


def _blank() -> dict[str, Any]:
    return {"labels": 0, "found": 0, "paged": 0, "true": 0, "low": 0, "missed": [], "false": []}


@dataclass
class WorldResult:
    resolution: Resolution = field(default_factory=Resolution)
    detectors: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(_blank))
    violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    paging: Paging = field(default_factory=Paging)

    def add(self, seed: int, run: Run) -> None:
        self.resolution.add(run.resolution)
        if run.paging is not None:
            self.paging.add(run.paging, f"seed {seed}: ")
        if run.error:
            self.errors.append(f"seed {seed}: {run.error}")
        if run.detection is None:
            return
        det = dict(run.detection)
        self.violations += [f"seed {seed}: {v}" for v in det.pop("negative_violations")]
        for d, row in det.items():
            for k in ("labels", "found", "paged", "true", "low"):
                self.detectors[d][k] += row[k]
            for k in ("missed", "false"):
                self.detectors[d][k] += [f"seed {seed}: {m}" for m in row[k]]

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for d in REGISTRY:
            t = self.detectors[d]
            # No attack labelled for it (a rule pack the simulator has no scenario for): nothing
            # to recall, and its precision still counts every page it made.
            recall = t["found"] / t["labels"] if t["labels"] else None
            precision = t["true"] / t["paged"] if t["paged"] else 1.0
            out.append({"detector": d, "recall": recall, "precision": precision, **t})
        return out

    def misses(self) -> list[str]:
        """Why this world misses its targets (empty: it meets them all)."""
        r = self.resolution
        out = list(self.errors)
        if r.coverage < COVERAGE_TARGET:
            out.append(f"coverage {r.coverage:.2%} < {COVERAGE_TARGET:.0%}")
        if r.wrong:
            out.append(f"{r.wrong} wrong tenants")
        for row in self.rows():
            if row["recall"] is not None and row["recall"] < RECALL_TARGET:
                out.append(f"{row['detector']} recall {row['recall']:.3f}")
            if row["precision"] < PRECISION_TARGET:
                out.append(f"{row['detector']} precision {row['precision']:.3f}")
        if self.violations:
            out.append(f"{len(self.violations)} labelled negatives paged")
        p = self.paging
        if p.repaged or p.unpaged:
            out.append(f"{p.attacks - p.paged_once} of {p.attacks} attacks not paged exactly once")
        if p.merged:
            out.append(f"{len(p.merged)} attacks wrongly merged")
        if p.negatives_paged:
            out.append(f"{len(p.negatives_paged)} pages of labelled negatives")
        if p.bad_escalations:
            out.append(f"{p.bad_escalations} escalations without a rise in severity")
        return out


# --- report ------------------------------------------------------------------------------------


def _print(results: dict[str, WorldResult], args: argparse.Namespace) -> None:
    print(
        f"worlds {', '.join(results)}; seeds {', '.join(map(str, args.seeds))}; "
        f"{args.days} simulated days each; detection window = the attack day\n"
    )
    print(
        f"tenant resolution (targets: >= {COVERAGE_TARGET:.0%} of tenant-scoped events with "
        "every true tenant resolved, none wrong)"
    )
    print(f"{'world':<8}{'events':>10}{'in lake':>9}{'scoped':>10}{'coverage':>10}{'wrong':>8}")
    for w, res in results.items():
        r = res.resolution
        in_lake = r.in_lake / r.events if r.events else 0.0
        print(
            f"{w:<8}{r.events:>10,}{in_lake:>9.1%}{r.scoped:>10,}{r.coverage:>10.2%}{r.wrong:>8,}"
        )
    print(
        f"\ndetectors (targets: recall >= {RECALL_TARGET}, precision >= {PRECISION_TARGET}, "
        "no labelled negative paged)"
    )
    head = f"{'world':<8}{'detector':<22}{'recall':>8}{'precision':>11}{'attacks':>9}{'found':>7}"
    print(head + f"{'paged':>7}{'true':>6}{'low':>6}")
    for w, res in results.items():
        for r in res.rows():
            print(
                f"{w:<8}{r['detector']:<22}{_ratio(r['recall']):>8}{r['precision']:>11.3f}"
                f"{r['labels']:>9}{r['found']:>7}{r['paged']:>7}{r['true']:>6}{r['low']:>6}"
            )
    print(f"\n{'world':<8}labelled negatives paged")
    for w, res in results.items():
        print(f"{w:<8}{len(res.violations)}")
    print(
        "\npaging, findings alerted hour by hour (targets: each attack paged exactly once, "
        "escalations only where severity rose, none merged, no negative paged)"
    )
    print(
        f"{'world':<8}{'attacks':>8}{'pages':>7}{'per attack':>11}{'once':>6}{'escalations':>12}"
        f"{'merged':>8}{'negatives':>10}{'unlabelled':>11}"
    )
    for w, res in results.items():
        p = res.paging
        per = (p.pages + p.escalations) / p.attacks if p.attacks else float("nan")
        print(
            f"{w:<8}{p.attacks:>8}{p.pages + p.escalations:>7}{per:>11.2f}{p.paged_once:>6}"
            f"{p.escalations:>12}{len(p.merged):>8}{len(p.negatives_paged):>10}"
            f"{len(p.unlabelled):>11}"
        )
    for w, res in results.items():
        lines = list(res.errors)
        lines += [f"unresolved: {n:,} {k}" for k, n in res.resolution.unresolved.most_common(6)]
        lines += [f"wrong: {e}" for e in res.resolution.wrong_examples]
        for r in res.rows():
            lines += [f"missed ({r['detector']}): {m}" for m in r["missed"]]
            lines += [f"false positive ({r['detector']}): {m}" for m in r["false"]]
        lines += [f"negative paged: {v}" for v in res.violations]
        p = res.paging
        lines += [f"not paged: {x}" for x in p.unpaged]
        lines += [f"paged more than once: {x}" for x in p.repaged]
        lines += [f"wrongly merged: {x}" for x in p.merged]
        lines += [f"negative's incident paged: {x}" for x in p.negatives_paged]
        lines += [f"unlabelled page: {x}" for x in p.unlabelled]
        if lines:
            print(f"\n{w}:")
            for line in lines:
                print(f"  {line}")
    print()
    for w, res in results.items():
        misses = res.misses()
        print(f"{w}: targets {'MET' if not misses else 'NOT MET (' + '; '.join(misses) + ')'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--worlds", nargs="+", choices=WORLDS, default=list(WORLDS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    # 15 days: the detectors' 14 days of history and the attack day (fewer days keep the nine
    # runs within about a quarter of an hour on two cores).
    ap.add_argument("--days", type=int, default=15)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    results: dict[str, WorldResult] = {w: WorldResult() for w in args.worlds}
    with tempfile.TemporaryDirectory(prefix="tenantwatch-eval-") as tmp:
        for w in args.worlds:
            for seed in args.seeds:
                print(f"{w}, seed {seed}: simulating {args.days} days ...", file=sys.stderr)
                run = run_one(w, seed, args.days, args.tenants, Path(tmp) / w)
                results[w].add(seed, run)
    ok = all(not r.misses() for r in results.values())
    if args.json:
        doc = {
            "seeds": args.seeds,
            "days": args.days,
            "worlds": {
                w: {
                    "resolution": {
                        "events": r.resolution.events,
                        "in_lake": r.resolution.in_lake,
                        "tenant_scoped": r.resolution.scoped,
                        "coverage": r.resolution.coverage,
                        "wrong": r.resolution.wrong,
                        "unresolved": dict(r.resolution.unresolved.most_common(20)),
                    },
                    "detectors": r.rows(),
                    "negative_violations": r.violations,
                    "paging": dataclasses.asdict(r.paging),
                    "errors": r.errors,
                    "misses": r.misses(),
                }
                for w, r in results.items()
            },
            "ok": ok,
        }
        print(orjson.dumps(doc).decode())
    else:
        _print(results, args)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
