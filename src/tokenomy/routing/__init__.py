"""Choosing the model that serves a request: route aliases and their strategies."""
