"""brix gateway."""
