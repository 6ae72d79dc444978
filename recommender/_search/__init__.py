"""Content search internals: chunking, BM25 + dense (Qdrant) indexes, score fusion, BEIR evaluation."""
