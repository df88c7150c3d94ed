"""The filter stage: language identification, quality rules and PII replacement."""
