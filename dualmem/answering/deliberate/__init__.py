"""System 2: strategies that deliberate over the raw history when the gate escalates.

- `EvidenceFirst` (`evidence.py`, the `evidence` strategy, default): search every raw turn,
  read the best-ranked dated lines (or the ones the model selects by number).
- `Neighbours` (`neighbours.py`): the raw turns around the top memories; cheap, tried first
  by the `scan` strategy.
- `Scan` (`scan.py`): D-Mem's full scan of the whole history in chunks.

Each is a `Strategy` (`base.py`) returning a `Deliberation`; the pipeline tries a strategy's
tiers in order until one's answer is accepted, and the arbiter (`arbiter.py`) then weighs
every answer made, the fast one included, against System 2's raw evidence.
"""

from .arbiter import arbitrate, supported_by
from .base import Deliberation, Strategy
from .evidence import EvidenceFirst
from .neighbours import Neighbours
from .scan import Chunk, Scan

__all__ = [
    "Chunk", "Deliberation", "EvidenceFirst", "Neighbours", "Scan", "Strategy", "arbitrate", "supported_by",
]
