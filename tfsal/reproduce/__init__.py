"""Reproductions of the source papers' figures and tables, one module per paper."""
