"""Alerts: policy (replicated), lifecycle (transition table), events with lineage."""
