"""Pure rules of the ingest: no web framework, no driver."""
