"""Autoscaling policies the lab compares (see ``lab.policies.base`` for their interface).

``registry.parse("NAME:key=value;...")`` builds them from ``--policies`` specs and
``registry.describe()`` lists every policy and setting. The policies:

- ``keda-hpa`` (``keda.py`` over ``hpa.py``): KEDA's Prometheus scaler and the HPA,
  from the Kubernetes and KEDA documentation, as the vLLM production-stack chart
  configures them; independent of ``scaler.policy``;
- ``brix-loop`` and ``brix-keda`` (``brix.py``): brix's fallback loop with the real
  ``scaler.policy``, and brix's queue signal through the KEDA + HPA model;
- ``kpa`` (``kpa.py``): Knative's KPA with AIBrix's defaults;
- ``brix-slo`` (``slo.py``): brix's SLO policy, ``scaler.slo``;
- ``fixed`` (``fixed.py``): a constant count.

``static.StaticMetrics`` is a ``MetricsView`` over fixed answers, for driving a
policy by hand.
"""
