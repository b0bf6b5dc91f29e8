"""The faust-streaming worker, its agents and tables, the embedded runtime and the CLI."""
