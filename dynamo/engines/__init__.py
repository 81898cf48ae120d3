"""Training engines: the supervised warm start and the RL trainers (local, OpenRLHF)."""
