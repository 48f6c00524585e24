"""Checks the query checker (``jobs.query.checker``) runs on parts of a query: aggregate arguments, join conditions.

Pure: imports only ``jobs.query``'s model, resolution and column uses, and sqlglot.
"""
