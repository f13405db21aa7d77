"""Object embeddings (DINOv2 on masked crops): see ``pipeline.embed.dinov2``."""
