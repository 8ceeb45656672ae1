"""Throwaway PostgreSQL and Chroma servers on loopback, for tests and the load test.

```python
with start_postgres() as pg, start_chroma() as chroma:
    memory = DualMemory(history_url=pg.url, index_url=chroma.url, ...)
```

PostgreSQL: `initdb` + `pg_ctl` from the installed binaries (Debian's `/usr/lib/postgresql/N/bin`
or `PATH`), installed with apt-get when missing and running as root. PostgreSQL refuses to run
as root, so as root the cluster belongs to the `postgres` user (`runuser`). Chroma: `chroma run`
from this Python's environment. Both bind 127.0.0.1 on a free port and live in a temporary
directory that is removed when they stop.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

__all__ = ["ChromaServer", "PostgresServer", "free_port", "start_chroma", "start_postgres"]

_PG_USER = "postgres"  # the OS user that owns the cluster when we run as root


class _Server:
    """A started server; as a context manager it stops on exit (also on errors)."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(ready, what: str, timeout: float, log: Path, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s; log tail:\n{tail}")


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    """The directory of initdb/pg_ctl; installs PostgreSQL with apt-get if it is missing."""
    for attempt in range(2):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
        found += [p for p in [shutil.which("initdb")] if p]
        if found:
            return Path(found[0]).parent
        if attempt == 0 and os.geteuid() == 0 and shutil.which("apt-get"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env, capture_output=True
            )
    raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql")


@dataclass
class PostgresServer(_Server):
    """A running throwaway cluster. `url` connects as the trusted superuser `dualmem`."""

    port: int
    root: Path
    bindir: Path
    seconds_to_start: float

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, dbname: str) -> str:
        return f"postgresql://dualmem@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        # immediate: the data is thrown away, so no need for a checkpoint on the way down
        _as_pg(
            [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _as_pg(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", _PG_USER, "--", *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def start_postgres() -> PostgresServer:
    start = time.monotonic()
    bindir = _pg_bindir()
    # not under pytest's tmp dirs: the postgres user must be able to reach the directory
    root = Path(tempfile.mkdtemp(prefix="dualmem-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, _PG_USER, _PG_USER)
    data, log = root / "data", root / "log"
    try:
        _as_pg(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "dualmem",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        )
        for _ in range(3):  # the free port can be taken between probing and binding
            port = free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
            done = _as_pg(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    options,
                    "start",
                ],
                check=False,
            )
            if done.returncode == 0:
                return PostgresServer(port, root, bindir, time.monotonic() - start)
        raise RuntimeError(f"PostgreSQL did not start: {done.stderr}\n{log.read_text()[-2000:]}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- Chroma


@dataclass
class ChromaServer(_Server):
    port: int
    root: Path
    process: subprocess.Popen
    seconds_to_start: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGKILL: a graceful stop takes ~2 s and the data is thrown away anyway
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _heartbeat(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def start_chroma(timeout: float = 60.0) -> ChromaServer:
    start = time.monotonic()
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists():
        exe = Path(shutil.which("chroma") or "chroma")
    root = Path(tempfile.mkdtemp(prefix="dualmem-chroma-"))
    log = root / "log"
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(exe), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            start_new_session=True,  # own process group: Ctrl-C of the caller is not forwarded
        )
    server = ChromaServer(port, root, process, 0.0)
    try:
        _wait_for(
            lambda: _heartbeat(port), "Chroma server", timeout, log, alive=lambda: process.poll() is None
        )
    except BaseException:
        server.stop()
        raise
    server.seconds_to_start = time.monotonic() - start
    return server
