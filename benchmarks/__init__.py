"""The performance suite behind ``make bench`` (see docs/performance.md)."""
