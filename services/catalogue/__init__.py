"""Catalogue: institutions, pricing guidelines, courses and offerings; publishes `institution.*`, `offering.*`."""
