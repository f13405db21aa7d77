"""Active learning and quality: uncertainty and diversity selection, auto-label metrics, a learned
quality score. Pure numpy (the quality model alone uses torch); never sqlite, never gradio."""
