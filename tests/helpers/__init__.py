"""Shared test helpers (importable as ``helpers.<module>``: pytest puts tests/ on sys.path)."""
