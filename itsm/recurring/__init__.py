"""Recurring tickets: templates that open a fresh ticket on a schedule."""
