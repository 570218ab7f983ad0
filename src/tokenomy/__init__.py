"""tokenomy: the control plane of inference economics."""

__version__ = "0.1.0"
