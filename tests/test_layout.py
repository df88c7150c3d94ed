"""The import rules of DESIGN.md: arrows only point down schemas <- pipelines, trainer <- flows,
in every module of every package (subpackages included), and no import cycle anywhere."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ALLOWED = {  # which of our packages each package may import
    "schemas": set(),
    "pipelines": {"schemas"},
    "trainer": {"schemas"},
    "flows": {"schemas", "pipelines", "trainer"},
}


def modules(package: str) -> dict[str, ast.Module]:
    """Every module of a package, recursively: {dotted name: syntax tree}."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def imported(tree: ast.Module) -> set[str]:
    """The project modules a module imports, at the top or inside functions (dotted names)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] in ALLOWED}


EVERY = {name: tree for package in ALLOWED for name, tree in modules(package).items()}


def test_every_module_of_every_subpackage_is_seen():
    assert "pipelines.dedup.stage" in EVERY and "flows.cli.options" in EVERY
    assert "pipelines.readers.warc_record" in EVERY and "pipelines.core.contract" in EVERY


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_the_table(package):
    found = {n: t for n, t in EVERY.items() if n.split(".")[0] == package}
    assert len(found) > 3, f"no modules found in {package}/"
    for name, tree in found.items():
        packages = {m.split(".")[0] for m in imported(tree)}
        assert packages <= ALLOWED[package] | {package}, f"{name} imports {packages}"


def test_no_import_cycles():
    """Following every import (function-level ones too) never leads back to where it began:
    no cycle is kept alive by an import hidden in a function."""
    graph = {name: {m for m in imported(tree) if m in EVERY and m != name}
             for name, tree in EVERY.items()}
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [name, nxt]))
            if nxt not in state:
                visit(nxt, path + [name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_trainer_runs_without_prefect_or_beam():
    """torchrun starts trainer.train on machines that may have neither installed."""
    code = ("import sys\n"
            "for blocked in ('prefect', 'apache_beam', 'pipelines', 'flows'):\n"
            "    sys.modules[blocked] = None  # any import of it now raises ImportError\n"
            "import trainer.train, trainer.launch, trainer.data, trainer.model\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_ci_runs_the_readme_test_command_verbatim():
    """The quick start's second line is the command CI runs, and it installs what the suite
    needs (chromium for the UI test) rather than leaving it to CI."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    assert len(lines) == 2, lines
    install, test = lines
    assert "corpus demo" in install and "pytest" in test and "tests.needs" in test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == test, (ci[-1], test)
