"""Data contracts shared by every part of the project: Arrow schemas, manifests, configuration.

Nothing here does I/O or processing; `pipelines`, `trainer` and `flows` all import from here.
"""
