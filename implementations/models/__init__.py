"""One module per model (or model family). Every module here is imported by the registry."""
