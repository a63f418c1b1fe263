"""Instruction tuning of the built-in model and, later, training-based mitigation."""
