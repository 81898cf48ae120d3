"""Tables and figures from finished runs (no training code imported)."""
