"""Apache Beam stages of the corpus build: one composite PTransform per stage, its DoFns, and a
`run_*` builder per job. Pure data logic: no Prefect here."""
