"""Pure-function core of DynaMO: arrays and tensors in, arrays and tensors out.

- `stats`: per-prompt success/attempt history keyed by a stable prompt id (numpy).
- `allocation`: Bernoulli variance, allocation weights, uniform and variance-minimising
  rollout allocation (numpy).
- `advantages`: group-normalised advantages for groups of different sizes (torch).
- `modulation`: token entropy and DynaMO's two detached advantage factors (torch).
- `losses`: PPO-clip policy loss with asymmetric and dual clip (torch).

Nothing here does I/O, keeps global state or imports an engine; submodules are not imported
eagerly so that numpy-only users (allocation, stats) do not pay for importing torch.
"""
