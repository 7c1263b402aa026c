"""The Lambda image (infra/Dockerfile) holds what the two functions import and nothing else.

``image_modules`` reads the Dockerfile the way Docker would run it: the folders its build stage
copies, less what it removes, are the modules ``pip install`` puts in the image; the packages are
the project's dependencies (no extra) and what they depend on. ``handler_modules`` follows the
handler's imports (at module level and inside functions, not those for type checking only), the
detectors of the registry and the compiled decoder (both imported by name at run time). The two
are compared here without Docker; where a Docker daemon runs, the image is also built and listed.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

DOCKERFILE = REPO / "infra" / "Dockerfile"
OURS = ("pipeline", "detectors")
ENTRY = "pipeline.handler"
# The files that import modules by name at run time (``importlib.import_module``), which no
# import statement shows: ``by_name`` knows what each imports.
BY_NAME = {"pipeline/ingest/native.py", "detectors/__init__.py"}
EXTENSION = "pipeline.ingest._ctscan"  # compiled from C: no .py file
NEVER = ("pipeline.simulate", "pipeline.notebook", "pipeline.plots")
NEVER_DISTS = ("matplotlib", "nbclient", "nbformat", "ipykernel")


# --- what the handler imports -----------------------------------------------------------------


def module_file(name: str, root: Path = REPO) -> Path | None:
    p = root.joinpath(*name.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, wherever the import statement is, except under
    ``if TYPE_CHECKING:``; ``from a import b`` counts ``a`` and ``a.b`` (either may be a
    module)."""
    path = module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return out


def by_name(name: str) -> list[str]:
    """What ``name`` imports by name at run time: every detector of the registry, the compiled
    decoder."""
    if name == "detectors":
        import detectors

        return sorted({v.partition(":")[0] for v in detectors.BUILTIN.values()})
    if name == "pipeline.ingest.native":
        return [EXTENSION]
    return []


@cache
def handler_modules() -> tuple[frozenset[str], frozenset[str]]:
    """(our modules the functions import, the top-level names of everything else they import)."""
    seen: set[str] = set()
    others: set[str] = set()
    todo = [ENTRY]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found = imports_of(name) if name != EXTENSION else set()
        for imported in [*found, *by_name(name)]:
            parts = imported.split(".")
            if parts[0] not in OURS:
                others.add(parts[0])
                continue
            for k in range(1, len(parts) + 1):
                candidate = ".".join(parts[:k])
                if candidate not in seen and (module_file(candidate) or candidate == EXTENSION):
                    todo.append(candidate)
    return frozenset(seen), frozenset(others - set(sys.stdlib_module_names) - {"__future__"})


def test_every_import_by_name_is_known() -> None:
    """A new ``import_module`` would hide a module from ``handler_modules``: it must be listed
    in ``BY_NAME``."""
    calls = {
        p.relative_to(REPO).as_posix()
        for root in OURS
        for p in (REPO / root).rglob("*.py")
        if "import_module(" in p.read_text()
    }
    assert calls == BY_NAME


# --- what the Dockerfile puts in the image ------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _instructions():
        if word == "FROM":
            stages.append([])
        stages[-1].append((word, rest))
    return stages


def image_files() -> set[str]:
    """The repository files ``pip install`` puts in the image, as the build stage leaves them:
    what it copies, less what it removes."""
    build, final = _stages()
    assert final[0] == ("FROM", "public.ecr.aws/lambda/python:3.12")
    assert ("COPY", "--from=build /opt/function ${LAMBDA_TASK_ROOT}") in final
    assert not [i for i in final if i[0] in ("RUN", "ADD") or (i[0] == "COPY" and i != final[1])]
    copied: set[str] = set()
    removed: list[str] = []
    for word, rest in build:
        if word == "COPY":
            *sources, _ = shlex.split(rest)
            for s in sources:
                p = REPO / s
                files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
                copied.update(f.relative_to(REPO).as_posix() for f in files)
        elif word == "RUN" and "pip install" in rest:
            rm = rest.split("&&")[0].split()
            assert rm[:2] == ["rm", "-rf"], rest
            removed = rm[2:]
    assert removed, "the build stage removes nothing before pip install"
    kept = {
        f
        for f in copied
        if not any(f == r or f.startswith(r.rstrip("/") + "/") for r in removed)
        and "__pycache__" not in f
    }
    return kept


def image_modules() -> set[str]:
    mods = set()
    for f in image_files():
        if f.endswith(".py") and f.split("/")[0] in OURS:
            parts = f[: -len(".py")].split("/")
            mods.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return mods


def image_distributions() -> set[str]:
    """The project's dependencies (no extra) and theirs, as installed here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [(Requirement(r), "") for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for wanted in ["", *req.extras]:
            key = f"{name}[{wanted}]"
            if key in seen:
                continue
            seen.add(key)
            todo += [(Requirement(r), wanted) for r in metadata.requires(name) or []]
    return {k.partition("[")[0] for k in seen}


def test_the_image_holds_neither_the_simulator_nor_the_notebook_helpers_nor_plots() -> None:
    mods = image_modules()
    assert "pipeline.handler" in mods and "pipeline.ingest.run" in mods  # a list, not nothing
    assert [m for m in mods if m.startswith(NEVER)] == []
    dists = image_distributions()
    assert {"pyarrow", "scikit-learn", "aws-lambda-powertools", "pydantic"} <= dists
    assert [d for d in NEVER_DISTS if d in dists] == []


def test_the_image_holds_every_module_the_functions_import_and_no_other() -> None:
    ours, _ = handler_modules()
    assert [m for m in ours if m.startswith(NEVER)] == []
    mods = image_modules()
    python_modules = ours - {EXTENSION}
    assert sorted(python_modules - mods) == [], "the handler imports them: keep them in the image"
    assert sorted(mods - python_modules) == [], (
        "the functions never import these: add them to the build stage's rm in infra/Dockerfile"
    )
    # The compiled decoder is built from its sources there.
    ext = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    sources = {s for m in ext["ext-modules"] for s in [*m["sources"], *m.get("depends", [])]}
    assert sources <= image_files()


def test_the_image_installs_every_package_the_functions_import() -> None:
    _, others = handler_modules()
    provided = metadata.packages_distributions()
    dists = image_distributions()
    missing = {
        top: provided.get(top)
        for top in others
        if not {canonicalize_name(d) for d in provided.get(top, [])} & dists
    }
    assert missing == {}
    assert "sklearn" in others and "pyarrow" in others  # the walk reached the detectors


# --- the image itself, where Docker runs --------------------------------------------------------


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"docker daemon not reachable: {probe.stderr.strip().splitlines()[-1:]}"
    return None


LIST_IMAGE = """
import json, os
import pipeline.handler, pipeline.ingest.native
root = os.environ["LAMBDA_TASK_ROOT"]
ours = []
for top in ("pipeline", "detectors"):
    for d, _, files in os.walk(os.path.join(root, top)):
        ours += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".py")]
dists = [p.partition("-")[0].lower().replace("_", "-") for p in os.listdir(root)
         if p.endswith(".dist-info")]
print(json.dumps({"ours": sorted(ours), "dists": sorted(dists),
                  "native": pipeline.ingest.native.available()}))
"""


@pytest.mark.slow
def test_the_built_image_holds_what_the_dockerfile_says(tmp_path: Path) -> None:
    why = _docker_unavailable()
    if why:
        pytest.skip(f"building the image needs a Docker daemon ({why}); the checks above ran")
    tag = "tenantwatch-image-test:latest"
    subprocess.run(
        ["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(REPO)], check=True, timeout=1800
    )
    out = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python3", tag, "-c", LIST_IMAGE],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    listed = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(listed["ours"]) == {f for f in image_files() if f.endswith(".py")}
    assert [d for d in NEVER_DISTS if d in listed["dists"]] == []
    assert listed["native"] is True  # gcc in the build stage compiled the decoder
