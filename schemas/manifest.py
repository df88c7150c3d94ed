"""The stage manifest: what every stage folder's `manifest.json` holds (DESIGN.md, "Stage
outputs"), read and written as this model, never by string keys.

`pipelines.core.contract.run_stage` writes one for every stage, training included, before the
`_SUCCESS` marker; a later run reuses a finished stage only when its fingerprint is the same and
its files still match what the manifest lists (`FileEntry`: size and modification time always,
sha256 where cheap, and always with `corpus verify`). The times are kept apart from the entries
(`file_times`), so two identical runs list identical files.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_VERSION = 1


class FileEntry(BaseModel):
    """One file a stage wrote, relative to its stage folder."""

    model_config = ConfigDict(extra="ignore")

    path: str
    bytes: int
    sha256: str
    records: int | None = None  # Parquet files: rows


class Counts(BaseModel):
    """The accounting identity: records_in == records_out + sum(rejected)."""

    records_in: int
    records_out: int
    rejected: dict[str, int] = Field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class EngineMetrics(BaseModel):
    seconds: float
    counters: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    """A finished stage: its inputs, config and code (the fingerprint), counts, files, metrics,
    and a section of its own where a stage has one (`crawl`, `tokens`, `result`,
    `decontaminate`)."""

    model_config = ConfigDict(extra="ignore")

    stage: str
    fingerprint: str
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    config_sha256: str = ""
    code_version: str = ""
    code_sha256: str = ""
    counts: Counts
    files: list[FileEntry] = Field(default_factory=list)
    rejected_files: list[FileEntry] = Field(default_factory=list)
    metrics: EngineMetrics
    file_times: dict[str, float] = Field(default_factory=dict)  # path: modification time
    crawl: dict[str, Any] | None = None  # scrape: what the crawl fetched (pipelines.crawl)
    tokens: dict[str, Any] | None = None  # tokenize: schemas.tokens.TokenShardsInfo as a dict
    result: dict[str, Any] | None = None  # train: the trainer's result.json
    decontaminate: dict[str, Any] | None = None  # filter: the eval set's files, texts, n-grams

    def all_files(self) -> list[FileEntry]:
        return [*self.files, *self.rejected_files]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2,
                          sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        return cls.model_validate_json(text)
