"""Benchmarks: one command each (``python -m bench.<name>``), printing a table and writing a
CSV (and a PNG where a picture helps) under ``bench/results/``."""
