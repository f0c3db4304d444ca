"""Database backups: create, verify, restore and tiered retention."""
