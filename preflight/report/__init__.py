"""Renderers of findings: terminal tables (rich) and one JSON document."""
