"""The price book: what every model costs, by token class, and its tier."""

from tokenomy.pricing.catalog import Catalog, Model
from tokenomy.pricing.sheet import PriceSheet

__all__ = ["Catalog", "Model", "PriceSheet"]
