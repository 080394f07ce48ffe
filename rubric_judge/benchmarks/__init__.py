"""Benchmark importers: IlluGenBench and MedGEN-Bench releases into manifests, outputs and task
rubrics, and the official scripts' result files into runs (their accuracy queries live in store/)."""
