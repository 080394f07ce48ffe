"""Benchmark adapters (IlluGenBench and MedGEN-Bench importers): not implemented yet."""
