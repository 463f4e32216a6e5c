"""The four Tarjotin services. None imports another: they talk through events only."""
