"""Code shared by the four Tarjotin services: events, bus, storage, HTTP, logging, metrics."""
