"""Ingest: load → clean → section-aware chunk → embed → upsert into the knowledge base."""
