"""The layering of docs/architecture.md, checked over the source's import statements (``ast``),
and the processes that must start without PyTorch, checked in fresh interpreters.

Rules: the trainer never imports the service; HTTP lives in ``service.api`` (uvicorn also in
``service.stack.processes``, which serves it in a thread); SQL in ``service.store`` and the
migrations; Ray's client in ``service.execution``, ``service.job`` and ``service.stack``;
MLflow's in ``service.tracking``; ``service.analysis`` is pure (numbers in, numbers out); every
module of the service is in a room (or is one of the controller's few top-level modules) and
each room imports only the rooms it may; no import circle between modules of the project; no
module over 400 lines.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "trainer")
MAX_LINES = 400


def _module_name_under(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name_under(root, p): p
            for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str, known: set[str], typing_too: bool) -> set[str]:
    """Every module ``module`` imports (anywhere in the file; under ``if TYPE_CHECKING`` only
    with ``typing_too``), resolved to a module of the project where it names one."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node) and not typing_too:
            skip.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def _graph(root: Path = ROOT, typing_too: bool = False) -> dict[str, set[str]]:
    sources = _sources(root)
    return {m: _imports(p, m, set(sources), typing_too) for m, p in sources.items()}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """What each module imports when it runs."""
    return _graph()


@pytest.fixture(scope="module")
def design_graph() -> dict[str, set[str]]:
    """What each module depends on, types included: a circle hidden behind ``TYPE_CHECKING``
    or a function-local import is still a circle of the design."""
    return _graph(typing_too=True)


def _importers_of(graph: dict[str, set[str]], top: str) -> set[str]:
    return {m for m, deps in graph.items()
            if any(d == top or d.startswith(top + ".") for d in deps)}


def _under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_trainer_never_imports_the_service(graph) -> None:
    assert {m for m in _importers_of(graph, "service") if _under(m, "trainer")} == set()


@pytest.mark.parametrize(("library", "allowed"), [
    ("fastapi", ("service.api",)),
    ("starlette", ("service.api",)),
    ("uvicorn", ("service.api", "service.stack.processes")),
    ("sqlalchemy", ("service.store", "service.migrations")),
    ("alembic", ("service.store", "service.migrations")),
    ("ray", ("service.execution", "service.job", "service.stack.ray_node")),
    ("mlflow", ("service.tracking", "trainer.tracking")),
    ("torch", ("trainer", "service.job")),
    ("matplotlib", ("service.report.figures",)),
    ("webdataset", ("trainer.data.shards", "trainer.data.convert")),
    ("braceexpand", ("trainer.config.shards",)),
])
def test_each_outside_system_is_reached_from_its_own_room(graph, library, allowed) -> None:
    strays = {m for m in _importers_of(graph, library) if not _under(m, *allowed)}
    assert strays == set(), f"{library} imported outside {allowed}"


def test_the_analysis_is_pure(graph) -> None:
    banned = ("fastapi", "starlette", "sqlalchemy", "ray", "mlflow", "torch", "matplotlib",
              "httpx", "service.store", "service.api", "service.execution", "trainer")
    for module, deps in graph.items():
        if _under(module, "service.analysis"):
            assert {d for d in deps if _under(d, *banned)} == set(), module


# The controller's modules that stay at the top of ``service/``: its use cases, settings and the
# definitions every room shares. Anything else lives in a room.
TOP_LEVEL = {"service", "service.cli", "service.settings", "service.states", "service.paths",
             "service.submit", "service.evaluate", "service.execution", "service.views"}

# Each room of ``service/`` and the rule for what it may import of the service: ``only`` lists
# everything it may reach (its own room included), ``never`` what it must not reach.
ROOMS: dict[str, dict[str, tuple[str, ...]]] = {
    "service.analysis": {"only": ("service.analysis",)},
    "service.report": {"only": ("service.report", "service.analysis")},
    "service.store": {"only": ("service.store", "service.states")},
    "service.specs": {"only": ("service.specs", "service.analysis")},
    "service.migrations": {"only": ("service.migrations", "service.store")},
    "service.stack": {"only": ("service.stack", "service.settings")},
    "service.tracking": {"only": ("service.tracking", "service.store", "service.settings",
                                  "service.views", "service.states")},
    "service.job": {"never": ("service.api", "service.cli", "service.stack", "service.submit",
                              "service.execution")},
    "service.planning": {"never": ("service.api", "service.cli", "service.stack",
                                   "service.submit", "service.execution")},
    "service.api": {"never": ("service.cli", "service.stack", "service.job.supervisor")},
}


def room_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every module of the service outside a room, and every import a room may not make."""
    out: list[str] = []
    for module, deps in sorted(graph.items()):
        if not _under(module, "service") or module in TOP_LEVEL:
            continue
        room = next((r for r in ROOMS if _under(module, r)), None)
        if room is None:
            out.append(f"{module}: not in a room (rooms: {', '.join(sorted(ROOMS))})")
            continue
        rule = ROOMS[room]
        for dep in sorted(d for d in deps if _under(d, "service")):
            if ("only" in rule and not _under(dep, *rule["only"])) or (
                    "never" in rule and _under(dep, *rule["never"])):
                out.append(f"{module} imports {dep}, which {room} may not")
    return out


def test_every_module_is_in_a_room_that_may_import_what_it_does(graph) -> None:
    assert room_violations(graph) == []


@pytest.mark.parametrize(("path", "source", "expected"), [
    ("service/helpers.py", "X = 1\n", "service.helpers: not in a room"),
    ("service/report/latest.py", "from service.store import Store\n",
     "service.report.latest imports service.store, which service.report may not"),
    ("service/job/status_page.py", "from service.api import deps\n",
     "service.job.status_page imports service.api.deps, which service.job may not"),
    ("service/stack/tune.py", "from service.job import supervisor\n",
     "service.stack.tune imports service.job.supervisor, which service.stack may not"),
])
def test_a_module_placed_in_the_wrong_room_is_caught(tmp_path, path, source, expected) -> None:
    """The same check over a copy of this tree with one misplaced module added."""
    shutil.copytree(ROOT / "service", tmp_path / "service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "trainer").mkdir()
    (tmp_path / path).write_text(source)
    found = room_violations(_graph(tmp_path))
    assert [v for v in found if v.startswith(expected)] != [], found
    assert len(found) == 1, found


def test_no_import_circle(design_graph) -> None:
    """Depth-first search for a back edge among the project's own modules."""
    internal = {m: {d for d in deps if d in design_graph and d != m}
                for m, deps in design_graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(internal[m]):
            if state.get(d) == 1:
                circles.append([*stack[stack.index(d):], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(internal):
        if m not in state:
            visit(m)
    real = [c for c in circles if not _reexport(c)]
    assert real == [], " ; ".join(" -> ".join(c) for c in real)


def _reexport(circle: list[str]) -> bool:
    """A package's ``__init__`` re-exporting a submodule that imports the package back: the
    one two-module loop the re-export pattern makes, not a circle of the design."""
    names = set(circle)
    if len(names) != 2:
        return False
    a, b = sorted(names, key=len)
    return b.startswith(a + ".") and _sources()[a].name == "__init__.py"


def test_no_module_is_over_the_size_of_one_room() -> None:
    long = {m: n for m, p in _sources().items()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _imported_after(code: str, modules: list[str]) -> dict[str, bool]:
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{m: m in sys.modules for m in {modules!r}}}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["service.specs", "service.job.supervisor",
                                    "trainer.config"])
def test_specs_the_job_driver_and_the_config_start_without_torch(module) -> None:
    seen = _imported_after(f"import {module}", ["torch", "transformers", "trainer.objectives",
                                                "trainer.model"])
    assert seen == {"torch": False, "transformers": False, "trainer.objectives": False,
                    "trainer.model": False}


def test_a_spec_validates_and_expands_without_torch() -> None:
    seen = _imported_after(
        """
        from service.specs import expand, parse_spec
        spec = parse_spec({"name": "x", "factors": {"ITC": {"path": "objectives.itc.enabled",
                           "levels": [False, True]}}, "seeds": 2})
        assert len(expand(spec).variants) == 2
        """,
        ["torch"],
    )
    assert seen == {"torch": False}
