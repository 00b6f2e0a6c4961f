"""brix localkube."""
