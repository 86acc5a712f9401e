"""Evaluators: how the search judges a candidate (see `base` for the protocol)."""
