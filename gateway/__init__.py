"""brix gateway: one OpenAI-compatible URL in front of the model pods.

``python -m gateway --port 8000`` (``brix-gateway``). Modules, each with one job,
from the edge inwards:

- ``__main__``: settings -> table, discovery, poller and app; serves it.
- ``server``: the HTTP protocol it is served with: the completion routes
  straight from the parser to ``completions``, the rest to the ASGI app.
- ``app``: the FastAPI app (``/v1/models``, ``/healthz``, ``/metrics``, errors in
  OpenAI's shape) and ``GatewayApp``, which sends completions straight to
- ``completions``: the checks on a completion request (key from ``keys``, size,
  JSON, model, strategy), then
- ``proxy``: resolve, hold (``hold``), pick (``picker``), forward and stream back.
- ``picker``: the routing strategies, a pure function of request and load.
- ``load``: in-flight counts and the sidecars' queue numbers.
- ``table``: models and adapters -> endpoints, read by requests, written by
- ``discovery`` (Kubernetes watches) and ``static`` (fixed routes, service mode).
- ``metrics``: the ``brix_gateway_*`` series; ``settings``: flags and env.
"""
