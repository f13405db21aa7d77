"""Command-line subcommands, one module per command (each exposes ``register(subparsers)``)."""
