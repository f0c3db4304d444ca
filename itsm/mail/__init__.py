"""Email: a transactional outbox, sent by jobs, never lost and never sent twice."""
