"""`dualmem serve --workers 2` as a real process: both workers answer, on one store, with the key.

The parent hands the settings to uvicorn's worker processes through the environment
(`server.worker_app`); concurrent adds through both workers must all land once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
KEY = {"X-API-Key": "worker-key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_share_one_store(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "DUALMEM_DATA_DIR": str(tmp_path / "data"), "DUALMEM_EXTRACT": "0"}
    command = [sys.executable, "-c", "from dualmem.cli import app; app()", "serve", "--port", str(port),
               "--workers", "2", "--api-key", "worker-key"]
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/v1/info", headers=KEY).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)

        def add(i: int) -> int:
            body = {"messages": [{"content": f"note number {i}", "id": f"turn-{i}"}]}
            return httpx.post(f"{base}/v1/turns", params={"user_id": "w"}, json=body, headers=KEY,
                              timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(add, range(24))) == {201}
        turns = httpx.get(f"{base}/v1/turns", params={"user_id": "w"}, headers=KEY).json()
        assert sorted(t["id"] for t in turns) == sorted(f"turn-{i}" for i in range(24))
        memories = httpx.get(f"{base}/v1/memories", params={"user_id": "w"}, headers=KEY).json()
        assert len(memories) == 24
        assert httpx.get(f"{base}/v1/turns", params={"user_id": "w"}).status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    assert log.read_text().count("Started server process") >= 2, log.read_text()
