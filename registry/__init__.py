"""Storage: SQLite registry (source of truth), vector index + outbox, datasets, exporters.

Never imports torch or gradio.
"""
