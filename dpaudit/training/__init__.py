"""dpaudit.training."""
