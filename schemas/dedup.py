"""Arrow schemas of the dedup stage's own tables.

`SIGNATURE_SCHEMA`: one row per document with text, written per input file while the stage runs
(`dedup/work/`) and, for the documents a snapshot kept, published as the snapshot's part of the
dedup index (`dedup_index/<snapshot>/docs/`). It holds what deciding a duplicate needs without
the text: who the document is, what the keep policies compare, and its MinHash signature.

`BAND_SCHEMA`: the index's band keys (`dedup_index/<snapshot>/bands/band=NN/`): a later snapshot
looks up its own band keys there instead of recomputing the earlier snapshots' signatures.
"""

import pyarrow as pa

SIGNATURE_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),  # row number in its file
        pa.field("id", pa.string()),
        pa.field("url", pa.string()),
        pa.field("host", pa.string()),
        pa.field("fetch_time", pa.timestamp("us", tz="UTC")),
        pa.field("source_file", pa.string()),
        pa.field("source_offset", pa.int64()),
        pa.field("snapshot", pa.string()),
        pa.field("n_chars", pa.int64()),  # length of the text (keep="longest_text")
        pa.field("text_hash", pa.string()),  # sha256 of the normalized text
        pa.field("signature", pa.binary()),  # num_perm little-endian uint32 (MinHasher)
        pa.field("shingles", pa.binary()),  # verify="exact" only: uint64 shingle hashes, else null
    ]
)

BAND_SCHEMA = pa.schema(
    [
        pa.field("key", pa.uint64(), nullable=False),  # the band's key (MinHasher.band_keys)
        pa.field("row", pa.int64(), nullable=False),  # row of the document in docs/
    ]
)
