"""Precision and recall of every detector over simulated months with different seeds.

    .venv/bin/python eval/evaluate.py [--seeds 7 11 23] [--days 30] [--tenants 50] [--json]

For each seed: ``simulate`` a world (the last day is the attack day), ``ingest`` it into a
temporary lake with the world's own relationships (its ``tenantwatch.toml``), run every detector
on the attack day with its usual history, and compare the findings with ``labels.json``.

How a finding is matched to a label (``matches``): it shares an event id with the label, or it
names the label's actor (or, for a tenant-level label, one of its tenants) and overlaps its time.

- recall of detector D: attack labels whose ``expected_detector`` is D that a finding of D
  matches / attack labels expecting D;
- precision of D: findings of D above low severity (what pages someone) that match an attack
  label, of any scenario, / findings of D above low. A probe that both the switching and the
  failure-spike detectors catch is a true positive for both. Low findings (recorded, not
  paged) are counted separately;
- negatives: findings above low severity that match a labelled negative (must be none).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors import REGISTRY
from pipeline.config import load_config
from pipeline.detect import run_detect
from pipeline.schema import SEVERITIES

RANK = {s: i for i, s in enumerate(SEVERITIES)}
SLACK = timedelta(minutes=5)


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


def run_seed(seed: int, days: int, tenants: int, workdir: Path) -> dict[str, Any]:
    from pipeline.ingest.run import ingest
    from pipeline.simulate import SimulationSpec, simulate

    logs, lake = workdir / f"logs-{seed}", workdir / f"lake-{seed}"
    spec = SimulationSpec(seed=seed, days=days, tenants=tenants)
    simulate(logs, spec)
    cfg = load_config(logs / "tenantwatch.toml")
    ingest([str(logs)], str(lake), cfg)
    labels = orjson.loads((logs / "labels.json").read_bytes())
    day = spec.attack_day
    since = datetime(day.year, day.month, day.day, tzinfo=UTC)
    result = run_detect(str(lake), cfg, since, since + timedelta(days=1))
    if result.summary["failed"]:
        raise SystemExit(f"seed {seed}: detectors failed: {result.summary['failed']}")
    findings = result.findings.to_pylist()
    return score(findings, labels)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 23])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    total: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "labels": 0,
            "found": 0,
            "paged": 0,
            "true": 0,
            "low": 0,
            "missed": [],
            "false": [],
        }
    )
    violations: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tenantwatch-eval-") as tmp:
        for seed in args.seeds:
            print(f"seed {seed}: simulating {args.days} days ...", file=sys.stderr)
            res = run_seed(seed, args.days, args.tenants, Path(tmp))
            violations += [f"seed {seed}: {v}" for v in res.pop("negative_violations")]
            for d, row in res.items():
                for k in ("labels", "found", "paged", "true", "low"):
                    total[d][k] += row[k]
                for k in ("missed", "false"):
                    total[d][k] += [f"seed {seed}: {m}" for m in row[k]]

    rows = []
    ok = not violations
    for d in REGISTRY:
        t = total[d]
        recall = t["found"] / t["labels"] if t["labels"] else float("nan")
        precision = t["true"] / t["paged"] if t["paged"] else 1.0
        ok &= recall >= 0.95 and precision >= 0.9
        rows.append({"detector": d, "recall": recall, "precision": precision, **t})
    if args.json:
        print(
            orjson.dumps(
                {
                    "seeds": args.seeds,
                    "days": args.days,
                    "detectors": rows,
                    "negative_violations": violations,
                    "ok": ok,
                }
            ).decode()
        )
        return 0 if ok else 1
    print(
        f"seeds {', '.join(map(str, args.seeds))}; {args.days} simulated days each; "
        f"window = the attack day\n"
    )
    head = f"{'detector':<22}{'recall':>8}{'precision':>11}{'attacks':>9}{'found':>7}"
    print(head + f"{'paged':>7}{'true':>6}{'low':>6}")
    for r in rows:
        print(
            f"{r['detector']:<22}{r['recall']:>8.3f}{r['precision']:>11.3f}{r['labels']:>9}"
            f"{r['found']:>7}{r['paged']:>7}{r['true']:>6}{r['low']:>6}"
        )
    for r in rows:
        for m in r["missed"]:
            print(f"missed ({r['detector']}): {m}")
        for m in r["false"]:
            print(f"false positive ({r['detector']}): {m}")
    print(f"\nlabelled negatives above low: {len(violations)}")
    for v in violations:
        print(f"  {v}")
    print(
        "\ntarget: recall >= 0.95 and precision >= 0.9 per detector, no negative above low: "
        + ("MET" if ok else "NOT MET")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
