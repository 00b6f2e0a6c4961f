"""brix lora_operator."""
