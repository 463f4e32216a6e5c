"""Benchmarks: the system under load through the gateway, compared with the bare floor of ../shared."""
