# The embedded verifiable task (data.task: arithmetic) and the resolved experiment config.


rule resolved_config:
    output:
        f"runs/{EXP}/config.yaml",
    log:
        f"logs/{EXP}/resolved_config.log",
    params:
        resolved=RESOLVED_CONFIG,
    run:
        from dynamo.io import write_text_atomic

        write_text_atomic(output[0], yaml.safe_dump(params.resolved, sort_keys=False))


rule make_task:
    output:
        train=f"{TASK}/train.jsonl",
        sft=f"{TASK}/sft.jsonl",
        splits=expand(f"{TASK}/{{split}}.jsonl", split=ARITH_SPLITS),
        manifest=f"{TASK}/manifest.json",
    log:
        f"logs/{EXP}/make_task.log",
    params:
        out=lambda w, output: Path(output.manifest).parent,
        seed=CFG.data.seed,
        pool=CFG.data.pool_size,
        eval=CFG.data.eval_size,
    threads: CFG.resources.data.threads
    resources:
        **resources_of("data"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo make-task --out {params.out} --seed {params.seed} --pool-size {params.pool} "
        "--eval-size {params.eval} > {log} 2>&1"
