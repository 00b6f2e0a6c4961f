"""Autoscaling policies the lab compares (see ``lab.policies.base`` for their interface)."""
