"""Assist: retrieve, rerank, and answer with citations, or refuse and hand off."""
