"""Where Beam pipelines run.

Locally a job runs on `FnApiRunner` (Beam's `DirectRunner` first tries to download a Prism binary,
which cannot work offline). In `multi_processing` mode the workers are separate processes started
through `pipelines.core.beam_worker`, whose logs go to a file (`EngineConfig.worker_log`, default
`corpus-beam-workers.log` in the temp folder). `EngineConfig.runner` names another runner
(`PortableRunner`, `FlinkRunner`, `SparkRunner`, `DataflowRunner`) and `pipeline_args` carries its
options, so the same transforms run unchanged elsewhere (tested: Beam's portable job service with
an external worker pool gives byte-identical files, `tests/test_portable.py`). `check_runner`
says in one line, before any stage starts, when such a runner cannot be used from here.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from urllib.parse import urlsplit

import apache_beam as beam
import grpc
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    SparkRunnerOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import create_runner
from apache_beam.transforms import environments

from pipelines.core import beam_worker
from schemas.config import EngineConfig

_LOGGER = logging.getLogger(__name__)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class RunnerUnavailable(RuntimeError):
    """The configured runner cannot be used from here: unknown, not installed, not supported, or
    a service its options name does not answer. The message is one line for the user."""


def is_local(engine: EngineConfig) -> bool:
    """True for the in-process FnApiRunner that `workers` and `running_mode` describe."""
    return engine.runner.lower() in ("fnapirunner", "fnapi")


def worker_log_path(engine: EngineConfig) -> str:
    return engine.worker_log or os.path.join(tempfile.gettempdir(), "corpus-beam-workers.log")


def make_pipeline(engine: EngineConfig) -> beam.Pipeline:
    if not is_local(engine):
        # Another runner gets its own options only: workers and running mode are FnApiRunner's.
        options = PipelineOptions(list(engine.pipeline_args), save_main_session=False)
        return beam.Pipeline(runner=engine.runner, options=options)
    mode = engine.running_mode
    if mode == "multi_processing":
        os.environ["CORPUS_BEAM_WORKER_LOG"] = worker_log_path(engine)
        command = f"{sys.executable} -m {beam_worker.__name__}"
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


def run_pipeline(pipeline: beam.Pipeline, maxima: tuple[str, ...] = ()) -> dict[str, int]:
    """Run to completion; return the job's user counters as {"namespace/name": value}, and the
    largest value of each distribution of the `maxima` namespaces as "namespace/name_max" (Beam's
    own distributions, such as BatchElements' timings, are left out: they differ run to run).

    Runners report counters differently: FnApiRunner and Beam's portable job service as committed
    values, some runners as attempted values only, and a counter comes back once per step that
    incremented it (summed here). A runner that reports no metrics gives {} and a warning; the
    stage's accounting check then fails naming the missing counter, rather than passing unchecked.
    """
    result = pipeline.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    try:
        query = result.metrics().query(MetricsFilter())
    except NotImplementedError:
        query = None
    except grpc.RpcError as err:  # a job service without GetJobMetrics
        if err.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        query = None
    if query is None:
        _LOGGER.warning("the Beam runner reported no metrics; records_in cannot be counted")
        return counters
    for counter in query["counters"]:
        key = f"{counter.key.metric.namespace}/{counter.key.metric.name}"
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[key] = counters.get(key, 0) + int(value or 0)
    for dist in query.get("distributions", []):
        if dist.key.metric.namespace not in maxima:
            continue
        key = f"{dist.key.metric.namespace}/{dist.key.metric.name}_max"
        value = dist.committed if dist.committed is not None else dist.attempted
        if value is not None and value.count:
            counters[key] = max(counters.get(key, 0), int(value.max))
    return counters


def check_runner(engine: EngineConfig, timeout_s: float = 5.0) -> None:
    """Raise RunnerUnavailable when `engine` names a runner that cannot run the stages from here.

    Without this, an unreachable job service fails the first stage only after Beam's one-minute
    gRPC wait, as a traceback inside the flow. Checked: the runner's name, that it is installed,
    and that the services named in its options accept connections. The worker pool
    (`--environment_type=EXTERNAL`) is checked only when the job service is on this machine:
    it is the job service, not this process, that connects to it.
    """
    if is_local(engine):
        return
    name = engine.runner
    if "dask" in name.lower():
        raise RunnerUnavailable(
            f"--runner {name} is not supported: Beam's DaskRunner (2.77) drops the tagged "
            f"outputs of a multi-output ParDo, where every stage puts its rejected records")
    try:
        kind = type(create_runner(name)).__name__
    except ValueError:
        raise RunnerUnavailable(
            f"unknown Beam runner {name!r}: use FnApiRunner (local), PortableRunner, FlinkRunner, "
            f"SparkRunner, DataflowRunner or a runner's dotted class name") from None
    except ImportError as err:
        raise RunnerUnavailable(f"--runner {name} is not installed here: {err}") from None
    if kind == "DataflowRunner":
        try:
            from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
        except ImportError:
            raise RunnerUnavailable(f"--runner {name} needs Beam's Google Cloud clients: "
                                    f"pip install 'apache-beam[gcp]==2.77.0'") from None
    options = PipelineOptions(list(engine.pipeline_args))
    portable = options.view_as(PortableOptions)
    endpoint = portable.job_endpoint
    if kind == "PortableRunner" and not endpoint:
        raise RunnerUnavailable(f"--runner {name} needs the address of a job service: "
                                f"--beam-option=--job_endpoint=HOST:PORT")
    services = []  # (what, option that names it, address, default port)
    if endpoint and endpoint != "embed":
        services.append(("Beam job service", "--job_endpoint", endpoint, 8099))
        if (portable.environment_type or "").upper() == "EXTERNAL" and \
                portable.environment_config and _host(endpoint) in LOCAL_HOSTS:
            services.append(("Beam worker pool", "--environment_config",
                             portable.environment_config, 50000))
    elif kind == "FlinkRunner":
        master = options.view_as(FlinkRunnerOptions).flink_master
        if master not in ("[local]", "[auto]"):
            services.append(("Flink master", "--flink_master", master, 8081))
    elif kind == "SparkRunner":
        master = options.view_as(SparkRunnerOptions).spark_master_url
        if master.startswith("spark://"):
            services.append(("Spark master", "--spark_master_url", master, 7077))
    for what, option, address, default_port in services:
        try:
            parts = _split(address)
            socket.create_connection((parts.hostname or "localhost", parts.port or default_port),
                                     timeout=timeout_s).close()
        except (OSError, ValueError) as err:
            raise RunnerUnavailable(
                f"cannot reach the {what} at {address} for --runner {name} "
                f"({getattr(err, 'strerror', None) or err}): start it, or correct "
                f"--beam-option={option}=... (README: Running on other Beam runners)") from None


def _split(address: str):
    """An address as `host:port`, `[::1]:port` or `http://host:port`, split by urllib."""
    return urlsplit(address if "://" in address else f"//{address}")


def _host(address: str) -> str:
    return _split(address).hostname or "localhost"
