"""A stage's fingerprint follows its code: editing a module reruns the stages that import it (and,
through their manifests, the stages after them), and nothing else."""

import shutil

from pipelines.core import code_hash, job
from pipelines.core.code_hash import closure, code_fingerprint
from schemas.config import EngineConfig, PipelineConfig
from tests.conftest import ROOT, shared


def test_the_closure_follows_imports_and_an_edit_changes_only_its_importers(tmp_path):
    assert "pipelines.filters.gopher" in closure("pipelines.filters.stage")
    assert "pipelines.filters.gopher" not in closure("pipelines.extract.stage")
    assert "pipelines.extract.html" in closure("pipelines.extract.stage")
    for package in ("pipelines", "schemas"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    stages = ("pipelines.extract.stage", "pipelines.filters.stage")
    before = {m: code_fingerprint(m, tmp_path) for m in stages}
    quality = tmp_path / "pipelines" / "filters" / "gopher.py"
    source = quality.read_text()
    quality.write_text(source + "\n# a comment\n")  # nothing that executes: nothing reruns
    code_fingerprint.cache_clear()
    assert code_fingerprint(stages[1], tmp_path) == before[stages[1]]
    quality.write_text(source + "\nMIN_WORDS = 51\n")
    code_fingerprint.cache_clear()
    after = {m: code_fingerprint(m, tmp_path) for m in stages}
    assert after["pipelines.extract.stage"] == before["pipelines.extract.stage"]
    assert after["pipelines.filters.stage"] != before["pipelines.filters.stage"]


def test_moving_a_module_and_fixing_its_imports_reruns_nothing(tmp_path):
    """A module moved into a package (its importers' import lines changed to match, a docstring
    edited on the way) keeps every fingerprint: the hash is of what executes, not of names."""
    import re

    for package in ("pipelines", "schemas"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    before = code_fingerprint("pipelines.filters.stage", tmp_path)
    moved = tmp_path / "pipelines" / "rules"
    moved.mkdir()
    (moved / "__init__.py").write_text('"""Rule sets."""\n')
    (tmp_path / "pipelines" / "filters" / "gopher.py").rename(moved / "gopher.py")
    for path in (tmp_path / "pipelines").rglob("*.py"):
        text = path.read_text()
        fixed = re.sub(r"\bpipelines\.filters\.gopher\b", "pipelines.rules.gopher", text)
        if fixed != text:
            path.write_text(fixed.replace('"""', '"""Moved. ', 1))
    code_fingerprint.cache_clear()
    assert "pipelines.rules.gopher" in closure("pipelines.filters.stage", tmp_path)
    assert code_fingerprint("pipelines.filters.stage", tmp_path) == before


def test_editing_the_filter_reruns_filter_and_what_follows(tmp_path, monkeypatch):
    config = PipelineConfig(engine=EngineConfig(workers=1, running_mode="in_memory"))
    warcs = sorted(str(p) for p in shared("warc").glob("*.warc.gz"))
    root = str(tmp_path)

    def build():
        results = [job.run("extract", root, config, inputs=warcs)]
        results += [job.run(name, root, config) for name in ("filter", "dedup", "shard")]
        return {r.name: r.skipped for r in results}

    assert build() == {"extract": False, "filter": False, "dedup": False, "shard": False}
    assert build() == {"extract": True, "filter": True, "dedup": True, "shard": True}
    real = code_hash.code_fingerprint

    def edited(module, root=code_hash.ROOT):  # as if pipelines/filters/gopher.py had been edited
        value = real(module, root)
        return value[::-1] if "pipelines.filters.gopher" in closure(module, root) else value

    monkeypatch.setattr(code_hash, "code_fingerprint", edited)
    assert build() == {"extract": True, "filter": False, "dedup": False, "shard": False}
