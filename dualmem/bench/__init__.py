"""Benchmarks: LoCoMo / RealTalk QA with official scoring, and a scale benchmark."""
