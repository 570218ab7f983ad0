"""Response cache: the exact cache (core) and the semantic engine (scoped vector search plus
a verifier that makes hits safe; the `embeddings` extra).

The semantic names load on first use, so the core gateway imports this package without
numpy or the embedder installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "DEFAULT_THRESHOLD": "tokenomy.cache.semantic",
    "CacheStore": "tokenomy.cache.semantic",
    "Hit": "tokenomy.cache.semantic",
    "MemoryStore": "tokenomy.cache.semantic",
    "Scope": "tokenomy.cache.semantic",
    "SemanticCache": "tokenomy.cache.semantic",
    "StoredEntry": "tokenomy.cache.semantic",
    "Verifier": "tokenomy.cache.verifier",
    "default_verifier": "tokenomy.cache.verifier",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenomy.cache' has no attribute {name!r}")
    return getattr(import_module(module), name)
