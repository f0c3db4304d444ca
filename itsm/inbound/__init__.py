"""Inbound email: mail to a mailbox becomes tickets and comments, each message exactly once."""
