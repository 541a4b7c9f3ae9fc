"""Generators behind one interface (fit / sample / save / load). Importing this registers all of them."""

from ehrdiff.models.base import REGISTRY, Generator, load_model

__all__ = ["REGISTRY", "Generator", "load_model"]
