"""The import rules of DESIGN.md: arrows only point down schemas <- pipelines, trainer <- flows."""

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


def our_imports(package: str) -> dict[str, set[str]]:
    found = {}
    for path in sorted((ROOT / package).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[path.name] = names & set(ALLOWED)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_the_table(package):
    files = our_imports(package)
    assert files, f"no modules found in {package}/"
    for name, imported in files.items():
        assert imported <= ALLOWED[package] | {package}, f"{package}/{name} imports {imported}"


def test_trainer_runs_without_prefect_or_beam():
    """torchrun starts trainer.train on machines that may have neither installed."""
    code = ("import sys\n"
            "for blocked in ('prefect', 'apache_beam', 'pipelines', 'flows'):\n"
            "    sys.modules[blocked] = None  # any import of it now raises ImportError\n"
            "import trainer.train, trainer.launch, trainer.data, trainer.model\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
