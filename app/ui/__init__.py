"""Gradio UI: ``build_app()`` plus one module per tab."""
