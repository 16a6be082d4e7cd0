"""The knowledge base: settings, tokenizer, embeddings, the Chroma store and the document registry.

Nothing in this package imports ``ingest``, ``assist`` or ``eval``: data flows one way, into
the store here and out of it through ``assist``.
"""
