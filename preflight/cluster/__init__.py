"""Cluster mode: hosts files, the SSH sweep, and what it collects from each node."""
