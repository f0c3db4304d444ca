"""Housekeeping: archiving finished tickets, backups, and keeping the job audit tidy."""
