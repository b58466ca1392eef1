"""What the tests share: tiny model builders, study runners, paths."""
