"""Helpers the integration and end-to-end tests share: real databases, bus namespaces, a TCP proxy."""
