"""Benchmarks: LoCoMo / RealTalk QA with the official F1, and a scale benchmark.

- `run_benchmark(dataset, data, out, mode=...)`: ingest, ask, score, report (`run.py`).
- `run_scale(out)`: ingestion throughput and search latency at 1K-100K memories (`scale.py`).
- `register(app)`: adds `dualmem bench locomo|realtalk|scale` to a typer app.
- `Record` (one answered question) and `System` (a system name, parsed) in `record.py`.
- Scorers in `score.py`, loaders in `data.py`, the LLM response cache in `cache.py`.
"""

from .run import register, run_benchmark
from .scale import run_scale

__all__ = ["register", "run_benchmark", "run_scale"]
