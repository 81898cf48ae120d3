"""Entropy Loss: GRPO plus an entropy bonus, loss = pg_loss - c * agg(H) (entropy regularisation,
Williams and Peng 1991; Mnih et al. 2016, "Asynchronous Methods for Deep RL"), as the DynaMO
paper's baseline runs it through verl's `entropy_coeff`.

H is each token's full-vocabulary entropy, aggregated like the policy loss (token-mean here);
the bonus is differentiated (it pushes the policy towards higher entropy). c = 0.001 is verl's
older default `entropy_coeff` (the DynaMO authors' code carries an unused 0.001 too); verl's
current default is 0. Change it with `loss.entropy_coef`.
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import LossSpec

ENTROPY_LOSS = dataclasses.replace(
    GRPO,
    name="entropy-loss",
    description="Entropy Loss: GRPO with an entropy bonus, loss = pg_loss - 0.001 * mean(H).",
    loss=dataclasses.replace(LossSpec(), entropy_coef=0.001),
)

METHODS = [ENTROPY_LOSS]  # registered by name (baselines/__init__.py)
