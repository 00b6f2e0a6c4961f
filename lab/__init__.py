"""brix's scaling lab: replays traffic traces through a simulated brix in virtual time.

A layer above the components: it imports their pure parts (``scaler.policy``,
``inference.sim``'s scheduler and timing model, ``gateway.picker``) and no
component imports it.
"""
