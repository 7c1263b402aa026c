"""The README documents every command (a command nobody can find does not exist)."""

from __future__ import annotations

import click

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
