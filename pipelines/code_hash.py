"""What a stage's output depends on in code: the source of its module and of every project module
it imports, directly or through others (imports inside functions included). A stage's fingerprint
holds this hash, so editing a filter reruns the filter stage, and through its changed manifest
every stage after it, and nothing else; the package version alone would not notice the edit."""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("pipelines", "schemas")  # what a stage's code can import of ours (the layering rule)


def module_file(name: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Project modules named by the imports of one file (`from a import b` counts a.b when b is a
    module, else a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            if name.split(".")[0] in PROJECT and module_file(name, root) is not None:
                found.add(name)
    return found


def closure(module: str, root: Path = ROOT) -> list[str]:
    """`module` and every project module it reaches through imports, sorted."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or module_file(name, root) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # its packages' __init__
        todo += imported_modules(module_file(name, root), root)
    return sorted(seen)


@lru_cache(maxsize=None)
def code_fingerprint(module: str, root: Path = ROOT) -> str:
    """sha256 over the names and sources of `module`'s closure."""
    digest = hashlib.sha256()
    for name in closure(module, root):
        digest.update(name.encode() + b"\0" + module_file(name, root).read_bytes() + b"\0")
    return digest.hexdigest()


def tree_fingerprint(root: Path = ROOT) -> str:
    """sha256 over every source file of the project's packages: names a checkout's code."""
    digest = hashlib.sha256()
    for package in (*PROJECT, "flows", "trainer"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
