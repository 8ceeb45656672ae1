"""`dualmem serve`: run the app on uvicorn, with one worker or several.

Several workers are separate processes on the same stores, which the library already allows
(SQLite in WAL mode with the per-partition lock, or PostgreSQL + a Chroma server). uvicorn
starts them from an import string, so the settings travel in an environment variable, without
the secrets: the API key and the model's key stay in their own variables, which workers inherit.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from ..config import Config
from ..demo import ingest_demo, load_demo
from ..errors import ConfigError
from ..llm.base import BaseLLM
from ..memory import DualMemory
from ..types import Scope
from .app import create_app
from .guard import LOOPBACK_HOSTS, ServeSettings, is_loopback

__all__ = ["serve", "worker_app"]

API_KEY_ENV = "DUALMEM_API_KEY"
_SETTINGS_ENV = "DUALMEM_SERVE_SETTINGS"  # from `serve` to its workers


def settings_for(
    host: str, *, api_key: str | None = None, cors_origins: Sequence[str] = (), runs: Sequence[Path] = (),
) -> ServeSettings:
    """The guards a server on `host` needs: off loopback, a key is required, and any Host
    header is accepted (the key is the guard); on loopback, only loopback Host names."""
    loopback = is_loopback(host)
    if not loopback and not api_key:
        raise ConfigError(
            f"serving on {host} exposes every scope's memory to the network: pass --api-key (or "
            f"set {API_KEY_ENV}), or bind 127.0.0.1"
        )
    return ServeSettings(
        api_key=api_key or None, allowed_hosts=list(LOOPBACK_HOSTS) if loopback else None,
        cors_origins=list(cors_origins), runs=[Path(r) for r in runs],
    )


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    workers: int = 1,
    demo: bool = False,
    runs: Sequence[Path] = (),
    cors_origins: Sequence[str] = (),
    llm: BaseLLM | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Serve the REST API and the inspector page until interrupted.

    `demo`: a temporary memory holding the demo conversation (raw turns, as `dualmem demo`
    indexes them), which the page opens first; it is deleted on exit.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    settings = settings_for(host, api_key=api_key, cors_origins=cors_origins, runs=runs)
    with ExitStack() as stack:
        if demo:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="dualmem-serve-demo-"))
            config = config.updated(data_dir=Path(data_dir), extract=False)
            conversation = load_demo()
            memory = DualMemory(config, llm=llm)
            ingest_demo(memory, conversation, echo)
            settings = replace(settings, demo=Scope(user_id=conversation["user_id"]))
            if workers > 1:
                memory.close()  # each worker opens the stores itself
        elif workers == 1:
            memory = DualMemory(config, llm=llm)
        shown = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        echo(f"dualmem inspector: {shown}  (API under {shown}v1, schema at {shown}openapi.json)")
        if workers == 1:
            uvicorn.run(create_app(memory, settings, close=True), host=host, port=port)
            return
        os.environ[_SETTINGS_ENV] = json.dumps({
            "config": config.model_dump(mode="json", exclude={"api_key"}),
            "settings": {
                "allowed_hosts": settings.allowed_hosts, "cors_origins": settings.cors_origins,
                "max_body": settings.max_body, "runs": [str(r) for r in settings.runs],
                "demo": settings.demo and settings.demo.model_dump(),
            },
        })
        if api_key:
            os.environ[API_KEY_ENV] = api_key
        uvicorn.run("dualmem.serve.server:worker_app", factory=True, host=host, port=port, workers=workers)


def worker_app() -> FastAPI:
    """One worker's app, from the settings `serve` left in the environment."""
    try:
        sent = json.loads(os.environ[_SETTINGS_ENV])
    except (KeyError, ValueError) as e:
        raise ConfigError(
            f"{_SETTINGS_ENV} is missing or unreadable: start workers with `dualmem serve`"
        ) from e
    fields = sent["settings"]
    settings = ServeSettings(**{
        **fields, "runs": [Path(r) for r in fields["runs"]],
        "demo": Scope(**fields["demo"]) if fields["demo"] else None,
        "api_key": os.environ.get(API_KEY_ENV) or None,
    })
    return create_app(DualMemory(Config.from_env(**sent["config"])), settings, close=True)
