"""What a process about to ingest sets up first, before any data: nothing it would never use."""

from __future__ import annotations

import importlib.abc
import sys


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def pyarrow_without_pandas() -> None:
    """Let pyarrow find pandas missing, as where it is not installed, in a process about to
    ingest (and the workers it forks). On its first conversion of any kind (``pa.scalar``,
    ``pa.array``), pyarrow imports pandas to ask whether the value is a pandas object: 0.18 s
    of imports and ~35 MB of peak RSS, before any work, for a question ingest never needs
    answered (~3 % of a ``--workers 1`` bench run's CPU). pyarrow asks once per process, so this
    hides pandas for that one question only: anything that wants pandas afterwards
    (``to_pandas``) still imports it. Nothing to do where pandas is already imported."""
    if "pandas" in sys.modules:
        return
    hidden = _NoPandas()
    sys.meta_path.insert(0, hidden)
    try:
        import pyarrow as pa

        pa.scalar(0)
    finally:
        sys.meta_path.remove(hidden)
