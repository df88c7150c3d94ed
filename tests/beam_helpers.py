"""A TestPipeline on FnApiRunner (the DirectRunner would try to download Prism)."""

from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline


def fn_api_pipeline() -> TestPipeline:
    return TestPipeline(runner=FnApiRunner())


def satisfies(predicate, what: str):
    """An `assert_that` matcher: the whole PCollection (a list) must satisfy `predicate`."""
    from apache_beam.testing.util import BeamAssertException

    def match(actual):
        if not predicate(actual):
            raise BeamAssertException(f"expected {what}, got {actual!r}"[:2000])

    return match
