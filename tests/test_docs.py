"""The README documents every command and every registered choice (a command, detector, source,
tenant strategy, relationship or channel nobody can find does not exist)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import typing

import click
import pytest

from pipeline.cli import cli
from tests.conftest import REPO


def _commands(group: click.Group, prefix: str = "tenantwatch") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        out.append(full)
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, full))
    return out


def test_every_command_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [c for c in _commands(cli) if f"`{c}" not in readme]
    assert not missing, f"undocumented commands: {missing}"


def _leaves(group: click.Group, prefix: str = "tenantwatch") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        out.extend(_leaves(cmd, full) if isinstance(cmd, click.Group) else [full])
    return out


def test_every_command_has_its_readme_section() -> None:
    headings = [line for line in (REPO / "README.md").read_text().splitlines() if line[:1] == "#"]
    leaves = _leaves(cli)
    assert "tenantwatch incident close" in leaves and "tenantwatch tenancy report" in leaves
    missing = [c for c in leaves if not any(f"`{c}`" in h for h in headings)]
    assert not missing, f"commands without a README section (a heading naming them): {missing}"


def _tags(union: object) -> list[str]:
    return [str(t.__struct_config__.tag) for t in typing.get_args(union)]


def _channels() -> list[str]:
    """The notification channels: every class in ``pipeline.alert`` that has what
    ``delivery.Channel`` asks for."""
    import pipeline.alert

    names = set()
    for info in pkgutil.iter_modules(pipeline.alert.__path__):
        module = importlib.import_module(f"pipeline.alert.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            # retry_window may be set per instance (SNS: only a FIFO topic has one).
            if all(hasattr(cls, a) for a in ("send", "batches")) and isinstance(
                getattr(cls, "name", None), str
            ):
                names.add(cls.name)
    return sorted(names)


def _registries() -> dict[str, list[str]]:
    import detectors
    from pipeline import config, schema
    from pipeline.simulate import ALL_SCENARIOS, WORLDS

    return {
        "detector": list(detectors.BUILTIN),  # a plugin documents its own
        "source": list(schema.SOURCES),
        "tenant strategy": _tags(config.ActorStrategy) + _tags(config.TargetStrategy),
        "relationship": _tags(config.Relationship),
        "channel": _channels(),
        "scenario": list(ALL_SCENARIOS),
        "world": list(WORLDS),
    }


def _row_keys(text: str) -> set[str]:
    """The code spans in the first two cells of every Markdown table row."""
    keys: set[str] = set()
    for line in text.splitlines():
        cells = line.strip().split("|")
        if len(cells) < 4 or not line.lstrip().startswith("|") or set(cells[1]) <= set("-: "):
            continue
        for cell in cells[1:3]:
            keys.update(re.findall(r"`([^`]+)`", cell))
    return keys


@pytest.mark.parametrize("registry", sorted(_registries()))
def test_every_registry_entry_has_its_readme_row(registry: str) -> None:
    entries = _registries()[registry]
    assert entries, f"the {registry} registry is empty"
    if registry == "channel":  # the look-up finds the two channels alerting picks between
        assert {"sns", "local"} <= set(entries)
    keys = _row_keys((REPO / "README.md").read_text())
    missing = sorted(e for e in entries if e not in keys)
    assert not missing, f"{registry} entries without a README table row: {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    head = (REPO / "README.md").read_text().split("\n\n", 3)[:3]
    text = "\n".join(head)
    assert "make demo" in text and "make test" in text


def test_both_readmes_name_every_message_attribute_a_notification_carries() -> None:
    from pipeline.alert import render
    from tests.alertfactory import CTX, incident

    names = set(render.message(incident(), "new", CTX, "n1").attributes)
    assert {"severity", "detector", "tenant_id"} <= names
    for doc in ("README.md", "infra/README.md"):
        text = (REPO / doc).read_text()
        missing = sorted(n for n in names if f"`{n}`" not in text)
        assert not missing, f"{doc} does not name the attributes {missing}"
        assert "`tenant` attribute" not in text and "and `tenant` " not in text


def test_the_alert_package_docstring_names_exactly_its_modules() -> None:
    import pkgutil
    import re

    from pipeline import alert

    modules = {m.name for m in pkgutil.iter_modules(alert.__path__)}
    named = set(re.findall(r"``(\w+)``", alert.__doc__ or ""))
    assert named == modules
