"""The write path: new turns -> extracted, reconciled memories (or raw turns) for the index,
and the background queue that extracts them after `add` returns."""
