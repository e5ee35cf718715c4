"""Fixtures for the widget tests (the doubles live in widget_fakes.py, importable by name)."""

from widget_fakes import clock, comms

__all__ = ["clock", "comms"]
