"""The extract stage: records of every input format to documents with their main text."""
