"""Data files shipped with the alerts package (read through importlib.resources)."""

__all__: list[str] = []
