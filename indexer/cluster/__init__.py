"""Index runs past one machine: the embedding on a Ray cluster (indexer.cluster.rayrun)."""
