"""Validity benchmarks: attribution methods against ground truth on benchmarks others defined."""
