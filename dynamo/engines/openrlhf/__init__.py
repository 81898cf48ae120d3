"""The `openrlhf` engine: OpenRLHF 0.11.2 (Ray + DeepSpeed + vLLM), patched with DynaMO's core functions.

How a run departs from stock OpenRLHF 0.11.2 (details in each module's docstring and in
docs/OPENRLHF_ENGINE.md):

- rollout.py    per-prompt rollout counts n_i from `dynamo.core.allocation` on the training path
                (exact budget sum n_i = B), every sample tagged with its group id and stable
                prompt id; every graded response recorded for the prompt statistics; DAPO's
                refill capped at `max_refill_rounds`.
- experience.py group advantages by group id through `dynamo.core.advantages.group_advantages`
                (the stock reshape to (-1, n) silently mixes unequal groups).
- actor.py      the policy's training step: entropy under no_grad, factors from
                `dynamo.core.modulation.modulation_factors` (micro- or mini-batch normalisation),
                loss from `dynamo.core.losses.policy_loss`, rescaled to OpenRLHF's global
                token/sequence normaliser.
- trainer.py    the PPOTrainer actor keeps `dynamo.core.stats.PromptStats`, allocates, caps the
                run at `train.steps`, writes metrics.jsonl, and saves/restores the statistics with
                the DeepSpeed checkpoint (client_states).
- install.py    Ray-safe installation: subclasses of the Ray actor classes, assigned back to the
                OpenRLHF module attributes before `train()` creates any actor.
- guards.py     every patched or relied-on OpenRLHF function is pinned by a source hash.
- entry.py      `python -m dynamo.engines.openrlhf.entry --dynamo.* ... <OpenRLHF flags>`.
- launcher.py   experiment config + method spec -> that command line (`build_command`, `launch`).
- spec_file.py  the resolved method spec as one JSON file in the run directory, with its digest:
                what the entry point, the controller and every policy rank read.
- reward_func.py the `--reward.remote_url` file: the project's grader, run inside the vLLM actors.

Nothing here imports OpenRLHF at package import time, so `dynamo train --dry-run` works without it.
"""

OPENRLHF_VERSION = "0.11.2"
