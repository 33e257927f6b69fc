"""Targets: the port and its adapters."""
