"""The shard stage: the corpus as Parquet files."""
