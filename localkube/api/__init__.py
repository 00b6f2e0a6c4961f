"""localkube's API server: a subset of the Kubernetes API with real semantics.

Layers, from the bottom: ``errors`` and the pure modules (``selectors``,
``patching``, ``schema``, ``tables``, ``promsd``, ``protobuf``) know nothing of
HTTP or storage; ``resources`` describes the kinds served and ``admission``
defaults and validates objects; ``store`` keeps objects, resourceVersions and
the watch fan-out; ``server`` (routing and verbs), ``watching`` (watch
streams), ``podlogs``, ``discovery`` and ``openapi`` speak HTTP;
``persistence`` and ``kubeconfig`` touch the state directory.
``localkube.node`` (the kubelet and controllers) never imports this package:
it is a client of the API over HTTP, like any controller.
"""
