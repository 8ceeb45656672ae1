"""The write path: new turns -> extracted, reconciled memories (or raw turns) for the index."""
