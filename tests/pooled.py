"""The pooled world's configuration, for tests whose logs are pooled-shaped (``tests.logfactory``:
session tags, ``tenants/<id>/`` keys, ``TENANT#<id>`` items, ``/tenants/<id>`` paths).

The built-in configuration resolves no tenants; this is the file ``tenantwatch simulate`` writes
for the pooled world (``sample_logs/tenantwatch.toml``), taken from the simulator itself so that
it never drifts from the logs it describes.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.config import Config, parse_config


@cache
def pooled_text() -> str:
    from pipeline.simulate import SimulationSpec
    from pipeline.simulate.world import build

    return build(SimulationSpec()).style.files()["tenantwatch.toml"]


def pooled_config(**sections: Any) -> Config:
    """The pooled world's configuration with the keys of the given top-level sections replaced,
    e.g. ``pooled_config(ingest={"batch_input_bytes": 1}, tenancy={"target": [...]})``."""
    data = tomllib.loads(pooled_text())
    for name, keys in sections.items():
        data[name] = {**data.get(name, {}), **keys} if isinstance(keys, dict) else keys
    return parse_config(data, environ={})


def pooled_file(directory: Path) -> str:
    """The pooled world's configuration as ``directory/tenantwatch.toml``, for ``--config``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tenantwatch.toml"
    path.write_text(pooled_text())
    return str(path)
