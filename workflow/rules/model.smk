# The base model: the tiny character-level LM built locally (no hub), then a short supervised
# warm start shared by every method and seed. GPU experiments load a hub model instead.


rule build_model:
    output:
        directory(f"models/{EXP}/init"),
    log:
        f"logs/{EXP}/build_model.log",
    params:
        m=CFG.model,
    threads: CFG.resources.data.threads
    resources:
        **resources_of("data"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo build-model --out {output} --seed 0 --layers {params.m.tiny_layers} "
        "--hidden {params.m.tiny_hidden} --heads {params.m.tiny_heads} > {log} 2>&1"


rule warmstart:
    input:
        model=CFG.init_model_path if CFG.model.build_tiny else [],
        sft=f"{TASK}/sft.jsonl",
    output:
        directory(f"models/{EXP}/warmstart"),
    log:
        f"logs/{EXP}/warmstart.log",
    params:
        model=lambda w, input: input.model or CFG.init_model_path,
        w=CFG.warmstart,
        template=lambda w: CFG.data.template,  # a lambda: its {problem} is no wildcard
    threads: CFG.resources.warmstart.threads
    resources:
        **resources_of("warmstart"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo warmstart --model {params.model} --data {input.sft} --out {output} --steps {params.w.steps} "
        "--lr {params.w.lr} --batch-size {params.w.batch_size} --seed 0 --threads {threads} "
        "--template {params.template:q} > {log} 2>&1"
