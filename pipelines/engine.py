"""Where Beam pipelines run.

Locally a job runs on `FnApiRunner` (Beam's `DirectRunner` first tries to download a Prism binary,
which cannot work offline). `EngineConfig.runner` names another runner (`PortableRunner`,
`FlinkRunner`, `DataflowRunner`, ...) and `pipeline_args` carries its options, so the same
transforms run unchanged on a cluster.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from schemas.config import EngineConfig


def make_pipeline(engine: EngineConfig) -> beam.Pipeline:
    options = PipelineOptions(
        list(engine.pipeline_args),
        direct_num_workers=engine.workers,
        direct_running_mode=engine.running_mode,
        save_main_session=False,
    )
    runner = FnApiRunner() if engine.runner == "FnApiRunner" else engine.runner
    return beam.Pipeline(runner=runner, options=options)


def run_pipeline(pipeline: beam.Pipeline) -> dict[str, int]:
    """Run to completion; return the job's user counters as {"namespace/name": value}."""
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    try:
        query = result.metrics().query(MetricsFilter())
    except NotImplementedError:  # some runners report no metrics
        return counters
    for counter in query["counters"]:
        key = f"{counter.key.metric.namespace}/{counter.key.metric.name}"
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[key] = counters.get(key, 0) + int(value or 0)
    return counters
