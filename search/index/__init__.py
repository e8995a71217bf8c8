"""Vector indexes: the kinds (exact, HNSW, IVF), their tuning, the on-disk store and its lock."""
