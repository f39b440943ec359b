"""Benchmarks that print figures (ratios against baselines measured in the same run).

Run with ``python3 dev.py bench`` (``--quick`` for smaller sizes). They are not
part of the test suite: targets are reported, not asserted.
"""
