"""Helpers shared by tests (not shipped in the wheel)."""
