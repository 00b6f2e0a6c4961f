"""brix inference."""
