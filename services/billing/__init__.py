"""Billing: commitment policies and budgets, payment commitments (maksusitoumus), invoices."""
