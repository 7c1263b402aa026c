"""The input records of ``_state/ingested`` as a run every few minutes reads them: each record
file once per process (``Ingestor.load_done`` decides from them which inputs are done)."""

from __future__ import annotations

import pyarrow as pa

from pipeline.lake import Lake

# The record files of ``_state/ingested`` read last, by lake and file. A file's name is its
# batch's id (a hash of the batch's inputs) or, compacted, a hash of the names it replaces, so
# what is read of it (identities, commit partition, batch) is the same whichever run wrote it:
# a run every few minutes reads only the files written since the run before. Only the
# partitions read last are kept.
_RECORDS: dict[tuple[str, str], pa.Table] = {}


def read_records(lake: Lake, folder: str) -> list[tuple[str, pa.Table]]:
    """``lake.read_folder(folder)``, each file read once per process (see ``_RECORDS``)."""
    for attempt in range(5):
        try:
            out = []
            for f in lake.files(folder):
                t = _RECORDS.get((lake.root, f))
                out.append((f, t if t is not None else lake.read_file(f)))
            break
        except FileNotFoundError:  # compacted away since the listing: listed again
            if attempt == 4:
                raise
    for key in [k for k in _RECORDS if k[0] == lake.root and k[1].startswith(f"{folder}/")]:
        _RECORDS.pop(key)
    _RECORDS.update({(lake.root, f): t for f, t in out})
    return out
