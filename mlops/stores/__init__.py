"""Where the platform keeps what it learns: the prediction log, outcomes and settlements, the online store.

Each store is a folder with one module per backend (SQLite natively, MongoDB or Redis in compose) and a factory
that picks the backend from its URI setting. What they share lives here once: `base` (StoreUnavailable, redaction
of credentials), `sqlite_file` (one WAL database file, its schema, its connections) and `ids` (time-ordered ids and
UTC timestamps).
"""
