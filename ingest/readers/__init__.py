"""Readers for the source formats beyond the default review: Markdown and plain text, PDF text
layers, and ClinicalTrials.gov API v2 study JSON. ``ingest.sources`` picks one by file type."""
