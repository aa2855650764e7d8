"""Serve in production: python -m <package> (settings in core/serving.py and core/config.py)."""

from .core.serving import serve

serve()
