"""The filter stage: language identification, quality rules and PII replacement.

`stage.py` (the Beam stage), `chain.py` (the filters in order, from the config), `base.py` (the
filter class, its counts, `apply_filters`), `langid.py` (language ID), `rules.py` (blocklist,
length, letters), `gopher.py`, `c4.py`, `fineweb.py` (the published rule sets), `textstats.py`
(their measures, right in every script), `pii.py` (PII replacement)."""
