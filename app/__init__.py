"""Application layer: workflows joining pipeline and registry, the Gradio UI and the CLI."""
