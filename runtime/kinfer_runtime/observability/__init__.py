"""Structured logs, Prometheus metrics and the probe server of the runtime."""
