"""alertbridge benchmarks: ``make bench`` or ``python -m bench [SCENARIO ...]`` (see bench/README.md)."""
