"""Writing to memory: extraction and its background queue."""
