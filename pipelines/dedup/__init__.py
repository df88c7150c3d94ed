"""The dedup stage: exact and MinHash LSH near-duplicate removal, across snapshots."""
