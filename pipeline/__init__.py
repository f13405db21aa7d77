"""Models and pure vision logic. Never imports gradio or any database module."""
