"""Workflows joining pipeline and registry; used by the UI and the CLI alike."""
