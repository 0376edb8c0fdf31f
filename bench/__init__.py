"""Benchmarks of gitops-kaito (`python bench/run.py`): generated repositories, the API emulator, kubectl as baseline.

Never part of the test suite; tests/test_bench_smoke.py only keeps the harness from rotting.
"""
