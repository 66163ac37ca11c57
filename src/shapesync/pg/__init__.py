"""Everything that speaks Postgres."""
