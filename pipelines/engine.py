"""Where Beam pipelines run.

Locally a job runs on `FnApiRunner` (Beam's `DirectRunner` first tries to download a Prism binary,
which cannot work offline). In `multi_processing` mode the workers are separate processes started
through `pipelines.beam_worker`, whose logs go to a file (`EngineConfig.worker_log`, default
`corpus-beam-workers.log` in the temp folder). `EngineConfig.runner` names another runner
(`PortableRunner`, `FlinkRunner`, `DataflowRunner`, ...) and `pipeline_args` carries its options,
so the same transforms run unchanged on a cluster.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms import environments

from schemas.config import EngineConfig


def worker_log_path(engine: EngineConfig) -> str:
    return engine.worker_log or os.path.join(tempfile.gettempdir(), "corpus-beam-workers.log")


def make_pipeline(engine: EngineConfig) -> beam.Pipeline:
    mode = engine.running_mode
    runner = engine.runner
    if runner == "FnApiRunner":
        if mode == "multi_processing":
            os.environ["CORPUS_BEAM_WORKER_LOG"] = worker_log_path(engine)
            command = f"{sys.executable} -m pipelines.beam_worker"
            runner = FnApiRunner(default_environment=environments.SubprocessSDKEnvironment
                                 .from_command_string(command_string=command))
            # FnApiRunner would replace our worker command in "multi_processing" mode; the mode
            # it is told is irrelevant once the environment is given (it warns, hence the level).
            mode = "in_memory"
            logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner") \
                .setLevel(logging.ERROR)
            # Workers forward their log records here too; they are in the worker log already.
            logging.getLogger("apache_beam.runners.portability.local_job_service") \
                .setLevel(logging.ERROR)
        else:
            runner = FnApiRunner()
    options = PipelineOptions(
        list(engine.pipeline_args),
        # in_memory runs in this process: one worker (more only draws a warning from Beam)
        direct_num_workers=1 if engine.running_mode == "in_memory" else engine.workers,
        direct_running_mode=mode,
        save_main_session=False,
    )
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
