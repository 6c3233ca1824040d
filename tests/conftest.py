"""Shared pytest configuration. Reusable helpers live in crewctl.testing, not here."""
