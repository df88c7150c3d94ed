"""The engine room: the stage output contract, Beam engines, Parquet tables, spills, live progress, the code hash, the ledger."""
