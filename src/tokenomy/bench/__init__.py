"""Load generator and metrics for OpenAI-compatible endpoints (``tokenomy bench``)."""
