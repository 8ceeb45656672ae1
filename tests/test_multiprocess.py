"""Several processes add, retry, search and answer on the same scopes at once.

The workload is `dualmem.bench.load` (spawned workers need an importable function): each
worker adds turns to shared users, retries some adds with the same turn ids, all workers add
one identical batch at the same moment, and every read is checked for foreign turns. A fresh
client then checks that each turn is in the history and the index exactly once, in its scope.
"""

from __future__ import annotations

import pytest

from dualmem import Config
from dualmem.bench.load import RACE_TURNS, run_load


def check(report) -> None:
    assert report.errors == []
    assert (report.lost_history, report.lost_index, report.duplicates, report.misplaced) == (0, 0, 0, 0)
    assert report.turns_written >= RACE_TURNS + 3  # the race batch plus each worker's own adds
    assert {"add", "search", "answer"} <= set(report.latencies)


@pytest.mark.slow
def test_processes_share_sqlite_and_embedded_chroma(tmp_path):
    config = Config(data_dir=tmp_path, extract=False)
    check(run_load(config, workers=3, ops=12, seconds=15, users=2))


@pytest.mark.slow
@pytest.mark.servers
def test_processes_share_postgres_and_chroma_server(tmp_path, postgres_url, chroma_url):
    config = Config(data_dir=tmp_path, extract=False, history_url=postgres_url, index_url=chroma_url)
    check(run_load(config, workers=3, ops=12, seconds=15, users=2))
