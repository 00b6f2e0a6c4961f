"""brix: shared contracts and plumbing used by every component.

This package is the lowest layer: it imports nothing from the components
(``gateway``, ``scaler``, ``lora_operator``, ``inference``, ``localkube``).
"""

__version__ = "0.1.0"
