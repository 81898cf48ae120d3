# Staging for compute nodes without internet (dynamo/stage.py): when the experiment names hub ids
# (model, training set, registered benchmarks), a localrule downloads them once into cache/ where
# Snakemake runs, and every later rule sees CFG with those hub ids replaced by the local copies.
# Training and evaluation commands run with the Hugging Face libraries offline (OFFLINE_ENV).
from dynamo.stage import command_args as stage_args, offline_prefix, plan as stage_plan, staged_config

STAGE = stage_plan(CFG)
OFFLINE_ENV = offline_prefix()
CFG = staged_config(CFG, STAGE)  # common.smk's helpers and all later rules read the staged paths


if not STAGE.empty:

    localrules:
        stage_inputs,

    rule stage_inputs:
        output:
            model=directory(STAGE.model[1]) if STAGE.model else [],
            files=[p for p in STAGE.outputs if not STAGE.model or p != STAGE.model[1]],
        log:
            f"logs/{EXP}/stage_inputs.log",
        params:
            hub=stage_args(STAGE),
        conda:
            "../envs/dynamo.yaml"
        shell:
            "dynamo stage {params.hub} --cache cache > {log} 2>&1"
