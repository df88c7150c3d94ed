"""Filter stage: language ID, the language keep-list, quality filters, decontamination, quality
scores, then PII replacement.

Documents are taken in batches (`beam.BatchElements`) and run through the filter chain
(`pipelines/filters/chain.py`, `apply_filters`): language ID labels the whole batch in one model
call (`pipelines/filters/langid.py`) and comes first because the quality rules depend on it
(English stop words, mean word length, sentence punctuation: `pipelines/filters/gopher.py`,
`c4.py`, `fineweb.py`); the keep-list comes right after it, as the cheapest drop. Kept documents
get `lang`, `lang_score`, their quality signals; those sharing n-grams with the evaluation items
given are dropped as `contaminated` (`pipelines/filters/decontam.py`: the eval set is built once,
here, before the job, and loaded by each worker from its file); the rest get the scores of the
quality models configured
(`quality_scores`, one model call per batch, with the drops of their thresholds:
`pipelines/filters/quality_scores.py`) and, last, their e-mail addresses, IP addresses and phone
numbers replaced by placeholders (`pipelines/filters/pii.py`), counted per kind. PII replacement
is no filter of the chain: it drops nothing, and the quality signals and scores are those of the
text before it. A top share of a model's scores (`NAME:top=P%`) is taken after the batches, over
the whole snapshot (`TopShare`). Every drop is a rejected row with its reason and a
`filter:dropped_<reason>` counter (counted by the filter base, `pipelines/filters/base.py`). The
stage's composite PTransform is `FilterDocuments` (documents -> `StageOutput`); the build reads:
read -> filter -> write.
"""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import asdict

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.core.contract import StageDir, file_input
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.job import Context, Job
from pipelines.core.progress import count_in
from pipelines.core.spill import remove_folder
from pipelines.core.tables import ReadTable, StageOutput, StageTables
from pipelines.filters.base import apply_filters
from pipelines.filters.chain import filter_chain
from pipelines.filters.decontam import Decontaminator, EvalNgrams, build_eval_set
from pipelines.filters.pii import PiiRedactor
from pipelines.filters.quality_scores import QualityScorer, TopShare, top_share
from schemas.config import EngineConfig, FilterConfig
from schemas.document import reject_document

STAGE = "filter"
BATCH_SIZE = 256
WORK_DIR = "work"  # documents waiting for a top share's cutoff, the eval set (removed at the end)
EVAL_SET = "eval-ngrams.npz"


class FilterBatch(beam.DoFn):
    """A batch of documents -> kept documents (main) and `rejected`."""

    def __init__(self, config: FilterConfig, eval_set: str | None = None):
        self.config, self.eval_set = config, eval_set  # the eval set's file (`write_eval_set`)

    def setup(self):
        self.filters = filter_chain(self.config)
        for step in self.filters:
            step.setup()
        self.pii = PiiRedactor(self.config.pii) if self.config.pii.enabled else None
        self.scorer = QualityScorer(self.config.quality_model) \
            if self.config.quality_model.models else None
        if self.scorer is not None:
            self.scorer.setup()
        self.decontaminator = None
        if self.eval_set is not None:
            self.decontaminator = Decontaminator(self.config.decontaminate, self.eval_set)
            self.decontaminator.setup()

    def process(self, batch: list[dict]):
        results = apply_filters(batch, self.filters)
        if self.decontaminator is not None:
            results = self.decontaminator.apply(results)
        if self.scorer is not None:
            results = self.scorer.apply(results)
        for doc, rejection in results:
            if rejection is not None:  # the filter counted it already
                yield pvalue.TaggedOutput("rejected", reject_document(
                    STAGE, rejection.reason, doc, rejection.detail))
                continue
            if self.pii is not None:
                text, counts = self.pii.redact(doc["text"])
                for kind, n in counts.items():
                    Metrics.counter(STAGE, f"pii_{kind}").inc(n)
                doc = {**doc, "text": text, "pii_replaced": sum(counts.values())}
            Metrics.counter(STAGE, f"lang_{doc['lang']}").inc()
            yield doc


class FilterDocuments(beam.PTransform):
    """Documents -> `StageOutput`: the kept documents (labelled with language), and the
    dropped ones as rejects with their reasons."""

    def __init__(self, config: FilterConfig, progress: str | None = None,
                 work: str | None = None, memory_limit: int | None = None,
                 eval_set: str | None = None):
        super().__init__()
        self.config, self.progress = config, progress
        self.work, self.memory_limit = work, memory_limit  # for a top share (`TopShare`)
        self.eval_set = eval_set  # its file; made here (under `work`) when not given

    def expand(self, docs):
        eval_set = self.eval_set
        if eval_set is None and self.config.decontaminate.paths:
            eval_set, _ = write_eval_set(self.config, self.work or tempfile.mkdtemp(
                prefix="corpus-filter-"))
        out = (docs
               | "CountIn" >> count_in(STAGE, self.progress)
               | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=BATCH_SIZE)
               | "Filter" >> beam.ParDo(FilterBatch(self.config, eval_set))
               .with_outputs("rejected", main="documents"))
        kept, rejected = out.documents, out.rejected
        top = top_share(self.config.quality_model)
        if top is not None:
            limit = {"memory_limit": self.memory_limit} if self.memory_limit else {}
            kept, dropped = kept | "TopShare" >> TopShare(*top, work=self.work, **limit)
            rejected = (rejected, dropped) | "AllRejected" >> beam.Flatten()
        return StageOutput(kept, rejected)


def write_eval_set(config: FilterConfig, folder: str) -> tuple[str, EvalNgrams]:
    """The eval set of `config.decontaminate`, built here (the driver) and written to `folder`
    for the workers to load: (its file, the set)."""
    eval_set = build_eval_set(config.decontaminate)
    url = posixpath.join(folder, EVAL_SET)
    eval_set.save(url)
    return url, eval_set


def build_filter(stage: StageDir, doc_urls: list[str], config: FilterConfig, num_shards: int,
                 engine: EngineConfig, progress: str | None = None,
                 about: dict | None = None) -> dict[str, int]:
    """The filter job; `about` gets the eval set's numbers, for the manifest."""
    p = make_pipeline(engine)
    work = stage.url(WORK_DIR)
    eval_url = None
    if config.decontaminate.paths:
        eval_url, eval_set = write_eval_set(config, work)
        if about is not None:
            about.update(asdict(eval_set.stats))
    out = p | "Read" >> ReadTable(doc_urls) | "Filter" >> FilterDocuments(
        config, progress, work=work, memory_limit=engine.write_memory, eval_set=eval_url)
    StageTables(stage, engine).write(out, num_shards=num_shards)
    counters = run_pipeline(p)
    remove_folder(work)
    return counters


def plan(ctx: Context) -> Job:
    config = ctx.config
    inputs = list(ctx.upstream_inputs)
    blocklist = config.filter.quality.url_blocklist
    if blocklist:  # its content, not only its path, decides what is dropped
        inputs.append(file_input(blocklist))
    for name, path in config.filter.quality_model.paths().items():  # so do the models'
        inputs.append(file_input(path, model=name))
    for path in config.filter.decontaminate.paths:  # and the eval files'
        inputs.append(file_input(path, eval_items=True))
    about: dict = {}
    return Job(inputs=inputs, build=lambda st, pr: build_filter(
        st, ctx.upstream_urls, config.filter, config.shard.num_shards, config.engine,
        progress=pr.folder, about=about),
        extra=(lambda st: {"decontaminate": about}) if config.filter.decontaminate.paths
        else None)
