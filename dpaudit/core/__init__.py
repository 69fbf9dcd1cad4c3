"""dpaudit.core."""
