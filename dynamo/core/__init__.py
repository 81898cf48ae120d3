"""Pure-function core of DynaMO: arrays and tensors in, arrays and tensors out.

- `stats`: per-prompt success/attempt history keyed by a stable prompt id (numpy).
- `allocation`: Bernoulli variance, allocation weights, uniform and variance-minimising
  rollout allocation (numpy).
- `advantages`: group-normalised advantages for groups of different sizes, W-REINFORCE's, and
  the per-token entropy advantage (torch).
- `modulation`: token entropy and DynaMO's two detached advantage factors (torch).
- `losses`: PPO-clip policy loss with asymmetric and dual clip (torch).
- `objective`: the token objective, the one function both engines call per micro-batch: a
  method's per-token advantages, masks, weights and extra terms, composed with the loss (torch).
- `window`: statistics over more than one token (entropy range, top-k, covariance picks),
  exact in one process and across data-parallel ranks (torch, torch.distributed).

Nothing here does I/O, keeps global state or imports an engine; submodules are not imported
eagerly so that numpy-only users (allocation, stats) do not pay for importing torch.
"""
