"""Evaluation dataset adapters (real benchmark formats and the synthetic set) and performance benchmarks."""
