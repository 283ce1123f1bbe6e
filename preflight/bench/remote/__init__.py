"""Code that runs on the nodes: standard library (and torch) only, Python 3.8+."""
