"""Scale benchmark (placeholder until written)."""


def scale_command() -> None:
    """Scale benchmark."""
