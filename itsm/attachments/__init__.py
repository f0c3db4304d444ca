"""Files on tickets and comments, kept in the database beside the rows they belong to."""
