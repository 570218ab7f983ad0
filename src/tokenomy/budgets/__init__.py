"""Budgets that never overshoot: definitions, periods, reservations, thresholds."""
