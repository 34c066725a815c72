"""The benchmark suite: `python -m benchmarks` (or `make bench`); see BENCHMARKS.md."""
