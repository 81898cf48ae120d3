"""Mechanism probes: measurements of what each DynaMO mechanism does, at saved policy snapshots."""
