"""Network logic shared by checks and cluster tests (pure functions; no sockets here yet)."""
