"""Independent reference implementations used by parity tests and benchmarks (test-only)."""
