"""Reports over what the hot path recorded."""
