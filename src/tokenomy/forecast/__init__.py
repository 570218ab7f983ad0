"""Spend and demand forecasts, and anomaly detection, read from the ledger's rollups.

demand     tokens per minute, the chosen model, and MASE (what "better" means)
backtest   rolling-origin evaluation against the seasonal-naive baseline
budgets    each budget's spend at period end: point, interval, exhaustion time
anomaly    spend spikes per principal or workflow, with the evidence
alerts     check_forecasts / check_anomalies: the proactive webhooks, once each
"""
