"""What a stage's output depends on in code: what executes in its module and in every project
module it imports, directly or through others (imports inside functions included). A stage's
fingerprint holds this hash, so editing a filter reruns the filter stage, and through its changed
manifest every stage after it, and nothing else; the package version alone would not notice.

The hash is of each module's syntax tree without its docstrings (comments are not in the tree),
with the imports of project modules reduced to the set of names they bind, and the modules' hashes
are combined in sorted order, not by name. So a comment, a docstring, or moving a module to another
package (and fixing the imports that name it) changes no fingerprint and reruns nothing; a changed
line of code, or a changed set of modules, does."""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

# the checkout: as many folders up as this module is deep in it (wherever it is moved)
ROOT = Path(__file__).resolve().parents[__name__.count(".")]
PROJECT = ("pipelines", "schemas", "trainer")  # what a stage (or training) can import of ours


def module_file(name: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _project(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in PROJECT


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Project modules named by the imports of one file (`from a import b` counts a.b when b is a
    module, else a)."""
    return {name for name in _parsed(path, *_stamp(path))[0]
            if _project(name) and module_file(name, root) is not None}


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=None)
def _parsed(path: Path, mtime_ns: int, size: int) -> tuple[tuple[str, ...], str | None]:
    """One parse of a file (as it is now: the cache is keyed by its stamp): the module names its
    imports name, and its digest (`source_digest`). Every stage's closure shares the core and
    schema modules, so a build parses each file once, not once per stage and purpose."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
    return tuple(names), _digest(tree)


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


class _Canonical(ast.NodeTransformer):
    """Docstrings dropped; imports of project modules taken out of the tree, the names they bind
    kept in `bound` (the module imported is hashed on its own, wherever it lives; the order of
    import lines does not matter)."""

    def __init__(self):
        self.bound: set[str] = set()

    def _body(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        node.body = body or ([] if isinstance(node, ast.Module) else [ast.Pass()])
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _body

    def visit_Import(self, node):
        if not any(_project(a.name) for a in node.names):
            return node
        self.bound |= {a.asname or a.name.split(".")[0] for a in node.names}
        return None

    def visit_ImportFrom(self, node):
        if node.level or not _project(node.module):
            return node
        self.bound |= {a.asname or a.name for a in node.names}
        return None


def source_digest(path: Path) -> str | None:
    """sha256 of what executes in one file (see the module docstring); None when nothing does."""
    return _parsed(path, *_stamp(path))[1]


def _digest(tree: ast.Module) -> str | None:
    canonical = _Canonical()
    tree = canonical.visit(tree)
    if not tree.body and not canonical.bound:
        return None
    text = ast.dump(tree, include_attributes=False) + "\n" + ",".join(sorted(canonical.bound))
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=None)
def code_fingerprint(module: str, root: Path = ROOT) -> str:
    """sha256 over the sorted digests of `module`'s closure (modules in which nothing executes,
    such as a package's `__init__` with only a docstring, left out)."""
    digests = sorted(d for d in (source_digest(module_file(name, root))
                                 for name in closure(module, root)) if d is not None)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def tree_fingerprint(root: Path = ROOT) -> str:
    """sha256 over every source file of the project's packages: names a checkout's code."""
    digest = hashlib.sha256()
    for package in (*PROJECT, "flows"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
