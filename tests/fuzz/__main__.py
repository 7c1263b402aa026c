"""``python -m tests.fuzz``: compare both CloudTrail decoders on mutated records for a time.

``make fuzz`` runs it against a build of the extension with AddressSanitizer and
UndefinedBehaviorSanitizer (``--extension``), loaded in place of the installed one before any of
ingestion is imported, under the ASan runtime (LD_PRELOAD, since this Python is not built with it)
and ``PYTHONMALLOC=malloc`` (so the extension's PyMem buffers are ASan's). Before it starts it
checks that the sanitizers are really there: the runtime is loaded, the build calls it, and ASan
stops a heap overflow in a child process with the same environment.

A sanitizer that fires stops the process at once: the batch being decoded is always on disk
(``--last-batch``) and ``--replay`` decodes it again. A disagreement is shrunk, printed as Python
bytes literals ready for tests/test_native.py, and the run exits 1.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EDGES = 1 << 16
_CANARY = "import ctypes; b = ctypes.create_string_buffer(64); ctypes.memmove(b, b'x' * 128, 128)"


def _load_extension(path: Path) -> Any:
    """Import ``path`` as pipeline.ingest._ctscan; its edge map (ctypes) or None."""
    name = "pipeline.ingest._ctscan"
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    try:
        return (ctypes.c_ubyte * EDGES).in_dll(ctypes.CDLL(str(path)), "tenantwatch_fuzz_edges")
    except ValueError:
        return None


def _sanitizer_problems(path: Path) -> list[str]:
    """Why the sanitizers would not be watching (empty: they are)."""
    problems = []
    if not hasattr(ctypes.CDLL(None), "__asan_init"):
        problems.append("the ASan runtime is not in this process (LD_PRELOAD it)")
    if "libubsan" not in Path("/proc/self/maps").read_text():
        problems.append("the UBSan runtime is not in this process")
    symbols = subprocess.run(
        ["nm", "-D", "--undefined-only", str(path)], capture_output=True, text=True, check=False
    ).stdout
    for prefix in ("__asan_report_", "__ubsan_handle_"):
        if prefix not in symbols:
            problems.append(f"{path} does not call {prefix}* (built without the sanitizer)")
    if os.environ.get("PYTHONMALLOC") != "malloc":
        problems.append("PYTHONMALLOC is not 'malloc': ASan would not see the extension's buffers")
    canary = subprocess.run(
        [sys.executable, "-c", _CANARY], capture_output=True, text=True, check=False
    )
    if canary.returncode == 0 or "heap-buffer-overflow" not in canary.stderr:
        problems.append("ASan let a heap overflow pass in a child process with this environment")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many files")
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
    parser.add_argument("--extension", type=Path, help="a build of _ctscan to load instead")
    parser.add_argument("--real-logs", type=Path, default=REPO.parent / "shared" / "real_logs")
    parser.add_argument("--last-batch", type=Path, default=REPO / "build" / "fuzz" / "last-batch")
    parser.add_argument("--findings", type=Path, default=REPO / "build" / "fuzz" / "findings")
    parser.add_argument("--shrink-seconds", type=float, default=30.0, help="per finding")
    parser.add_argument("--replay", type=Path, nargs="+", help="decode these files as one batch")
    args = parser.parse_args(argv)
    if args.seconds is None and args.cases is None and not args.replay:
        args.seconds = 180.0

    edges = None
    if args.extension is not None:
        edges = _load_extension(args.extension.resolve())
        problems = _sanitizer_problems(args.extension)
        if problems:
            print("the sanitizers are not watching:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
        print(f"sanitized build {args.extension}: AddressSanitizer and UndefinedBehaviorSanitizer "
              f"live; edge coverage {'on' if edges is not None else 'off'}")  # fmt: skip

    from pipeline.ingest import native
    from tests.fuzz import differential
    from tests.fuzz.mutate import load_seeds

    if native._ctscan is None:
        print("the extension is not built: nothing to compare", file=sys.stderr)
        return 2
    if args.extension is not None:
        assert Path(native._ctscan.__file__).resolve() == args.extension.resolve()

    if args.replay:
        found = differential.compare([p.read_bytes() for p in args.replay])
        print("the same by both decoders" if found is None else f"{found.kind}: {found.detail}")
        return 0 if found is None else 1

    differential.record_batches_in(args.last_batch)
    seed = args.seed if args.seed is not None else int(time.time())
    real = args.real_logs if args.real_logs.is_dir() else None
    seeds = load_seeds(REPO, real)
    print(f"seed {seed}; {len(seeds):,} seed records (real_logs: {real or 'absent'})", flush=True)

    def coverage() -> bytes:
        assert edges is not None
        counts = bytes(edges)
        ctypes.memset(edges, 0, EDGES)
        return counts

    report = differential.run(
        seeds,
        seed=seed,
        max_cases=args.cases,
        seconds=args.seconds,
        coverage=coverage if edges is not None else None,
        log=lambda line: print(line, flush=True),
        shrink_seconds=args.shrink_seconds,
    )
    print(
        f"{report.cases:,} cases ({report.batches:,} batches) in {report.seconds:,.0f} s, seed "
        f"{seed}: {report.taken:,} taken by the C decoder; {report.records_in:,} records "
        f"read, {report.rows:,} rows, {report.quarantined:,} quarantined; "
        f"{report.interesting:,} cases kept for new edges; {len(report.findings)} findings"
    )
    if report.findings:
        args.findings.mkdir(parents=True, exist_ok=True)
        out = args.findings / f"seed-{seed}.jsonl"
        with out.open("w") as f:
            for found in report.findings:
                print(f"\n{found.kind}\n  {found.detail}\n  files: {list(found.files)!r}")
                files = [x.decode("latin-1") for x in found.files]
                f.write(json.dumps({"kind": found.kind, "detail": found.detail, "files": files}))
                f.write("\n")
        print(f"\nfindings written to {out} (files as latin-1 text)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
