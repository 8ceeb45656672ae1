"""Shared pytest plugins: the real servers of tests marked `servers` (tests/servers.py)."""

pytest_plugins = ["tests.servers"]
