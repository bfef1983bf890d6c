"""How jobs reach workers and events reach watchers: in-process when embedded, Redis when distributed."""
