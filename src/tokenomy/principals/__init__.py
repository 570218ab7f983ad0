"""Virtual keys and the principals they belong to."""

from tokenomy.principals.keys import KeyStore
from tokenomy.principals.principal import Principal

__all__ = ["KeyStore", "Principal"]
