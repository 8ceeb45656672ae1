"""System 2: strategies that deliberate over the raw history when the gate escalates.

- `Neighbours` (`neighbours.py`): the raw turns around the top memories; cheap, tried first.
- `Scan` (`scan.py`): D-Mem's full scan of the whole history in chunks.

Each is a `Strategy` (`base.py`) returning a `Deliberation`; the pipeline tries them in order
until one's answer is accepted.
"""

from .base import Deliberation, Strategy
from .neighbours import Neighbours
from .scan import Chunk, Scan

__all__ = ["Chunk", "Deliberation", "Neighbours", "Scan", "Strategy"]
