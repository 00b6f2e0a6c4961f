"""brix on one machine: localkube, Prometheus and the ``local`` overlay (``brix up``)."""
