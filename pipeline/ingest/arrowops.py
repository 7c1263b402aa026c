"""Arrow idioms the ingest stages share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def occurrences(keys: pa.ChunkedArray | pa.Array, last: bool = False) -> pa.Array:
    """True for each row that is the first (in row order) with its key, or with ``last`` the
    last one."""
    n = len(keys)
    if pc.count_distinct(keys).as_py() == n:
        return pa.array(np.ones(n, dtype=bool))
    which = "max" if last else "min"
    rows = pa.table({"key": keys, "row": np.arange(n)})
    kept = rows.group_by("key", use_threads=False).aggregate([("row", which)])
    return pc.is_in(pa.array(np.arange(n)), value_set=kept[f"row_{which}"])
