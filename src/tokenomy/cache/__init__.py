"""Semantic response cache: scoped vector search plus a verifier that makes hits safe."""

from tokenomy.cache.semantic import (
    DEFAULT_THRESHOLD,
    CacheStore,
    Hit,
    MemoryStore,
    Scope,
    SemanticCache,
    StoredEntry,
)
from tokenomy.cache.verifier import Verifier, default_verifier

__all__ = [
    "DEFAULT_THRESHOLD",
    "CacheStore",
    "Hit",
    "MemoryStore",
    "Scope",
    "SemanticCache",
    "StoredEntry",
    "Verifier",
    "default_verifier",
]
