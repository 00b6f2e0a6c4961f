"""brix scaler."""
