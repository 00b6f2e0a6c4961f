"""localkube's API server: a subset of the Kubernetes API with real semantics.

Layers, from the bottom: ``errors`` and the pure modules (``selectors``,
``patching``, ``schema``, ``tables``, ``promsd``) know nothing of HTTP or
storage; ``resources`` describes the kinds served; ``store`` keeps objects,
resourceVersions and watch fan-out; ``handlers`` and ``server`` speak HTTP.
``localkube.node`` (the kubelet and controllers) never imports this package:
it is a client of the API over HTTP, like any controller.
"""
