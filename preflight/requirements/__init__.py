"""Read pip requirements files and pyproject.toml dependencies offline, the way pip reads them."""
