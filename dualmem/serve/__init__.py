"""`dualmem serve`: the REST API over `DualMemory` and the inspector page, in one ASGI app.

- `create_app(memory, settings)`: the FastAPI app (routes in `app.py`, guards and error
  answers in `guard.py`, benchmark folders in `runs.py`, the page in `static/`).
- `serve(config, host=..., ...)`: run it on uvicorn (`server.py`), as `dualmem serve` does.

Needs the `serve` extra: `pip install 'dualmem[serve]'`.
"""

from .app import create_app
from .guard import ServeSettings
from .server import serve

__all__ = ["ServeSettings", "create_app", "serve"]
