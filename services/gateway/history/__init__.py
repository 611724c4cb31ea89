"""Size history over time and the growth forecast."""
