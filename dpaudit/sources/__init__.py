"""dpaudit.sources."""
