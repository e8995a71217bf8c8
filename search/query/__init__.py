"""Queries: requests, filters and ranking against the serving model's index."""
