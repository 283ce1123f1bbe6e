"""Versioned compatibility data (TOML, each entry with its source), shipped as package data."""
