"""Benchmark suite of n3seq: ``python -m benchmarks.run`` (``make bench``).

Every figure is a median of repeats; every comparison is a ratio to a baseline measured in the
same run; peak memory is measured for one call in a fresh subprocess.
"""
