"""The tokenize stage: a tokenizer, and packed token shards for the trainer."""
