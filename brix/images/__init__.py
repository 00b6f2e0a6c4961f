"""Building brix's container images (``make images``, ``python -m brix.images``).

``plan`` holds the pure decisions (which images, from which Dockerfile and
target, with which pip settings and mirror); ``builder`` runs docker or podman.
"""
