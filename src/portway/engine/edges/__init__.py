"""Published edges: one module per visitor-facing protocol, all ending in `connect_visitor`."""
