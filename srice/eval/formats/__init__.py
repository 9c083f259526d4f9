"""Benchmark file formats, one module each (``jsonl``, ``tsv``, ``table`` for parquet and saved HF
datasets) over shared field helpers (``fields``); ``benchmarks`` describes each benchmark's field
convention once, as a record."""
