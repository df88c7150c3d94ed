"""The shard stage's own check: a document without text is a counted reject, never a row.

A whole build's shards and token files, read back with plain pyarrow and numpy, are checked in
tests/test_golden.py; the same bytes with worker processes in tests/test_tables.py (the table
writer), tests/test_tokenize.py, tests/test_dedup.py and, for every stage on an external worker
pool, tests/test_portable.py."""

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.shard.stage import ShardDocuments
from schemas.document import empty_document
from tests.beam_helpers import fn_api_pipeline


def test_shard_check_rejects_empty_text():
    docs = [empty_document(id="a", url="u:a", text="words"),
            empty_document(id="b", url="u:b", text="   "),
            empty_document(id="c", url="u:c", text=None)]
    with fn_api_pipeline() as p:
        out = p | beam.Create(docs) | ShardDocuments()
        assert_that(out.kept | "Ids" >> beam.Map(lambda d: d["id"]), equal_to(["a"]), label="k")
        assert_that(out.rejected | "Why" >> beam.Map(lambda r: (r["id"], r["reason"])),
                    equal_to([("b", "empty_text"), ("c", "empty_text")]), label="r")
