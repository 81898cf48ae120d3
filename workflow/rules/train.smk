# RL training: one job per (method, seed). The run directory keeps its checkpoint across a
# killed job (only final/ and summary.json are declared outputs, which Snakemake removes before
# a rerun), so a restarted job resumes where it stopped.


rule train:
    input:
        config=f"runs/{EXP}/config.yaml",
        model=base_model_input(),
        pool=[CFG.train_pool_path] if (CFG.data.task == "arithmetic" or STAGE.train) else [],
    output:
        final=directory(f"{RUN}/final"),
        summary=f"{RUN}/summary.json",
    log:
        f"logs/{EXP}/train/{{method}}_seed{{seed}}.log",
    params:
        run_dir=RUN,
        base_model=lambda w, input: input.model or CFG.base_model_path,
        # Not used by the command: recorded so that a changed method spec or training setting
        # reruns the job (params are a default rerun trigger); the job then refuses or retrains
        # (dynamo/fingerprint.py, docs/RESUMING.md).
        setup=lambda w: train_setup(w.method),
        # --config fresh_runs=true: retrain runs whose checkpoint no longer matches. A function of
        # `input` on purpose: Snakemake leaves params derived from input out of its rerun trigger,
        # so toggling the flag does not rerun every training job.
        fresh=lambda w, input: "--fresh" if CFG.fresh_runs else "",
        offline=OFFLINE_ENV,
        # DeepSpeed compiles FusedAdam on first use unless it was prebuilt (DS_BUILD_FUSED_ADAM=1, README):
        # a node-local build directory, so that a killed job leaves no stale lock in the shared home.
        extensions="TORCH_EXTENSIONS_DIR=${TMPDIR:-/tmp}/torch-extensions-${USER:-dynamo} " if CFG.engine == "openrlhf" else "",
    threads: CFG.resources.train.threads
    # Longest jobs first: the short evaluations then fill the cores at the end, instead of a
    # last training job running alone on one core while the other idles.
    priority: 1
    resources:
        **train_resources(),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "{params.offline}{params.extensions}dynamo train --config {input.config} --method {wildcards.method} --seed {wildcards.seed} "
        "--out {params.run_dir} --base-model {params.base_model} --threads {threads} {params.fresh} > {log} 2>&1"


# Opt-in (openrlhf.delete_checkpoints_after_eval): a finished run's DeepSpeed checkpoints (~14 bytes
# per parameter each: bf16 weights, fp32 master copy, Adam moments) are deleted once its final
# weights exist and every benchmark has scored them. Nothing reads them afterwards: a rerun of the
# train job (changed setup) starts over, as it would after `--config fresh_runs=true`.
rule prune_run_checkpoints:
    input:
        final=f"{RUN}/final",
        summary=f"{RUN}/summary.json",
        scores=expand(f"{RUN}/eval/{{bench}}/scores.json", bench=benchmark_labels(), allow_missing=True),
    output:
        f"{RUN}/ckpt.deleted",
    log:
        f"logs/{EXP}/prune_checkpoints/{{method}}_seed{{seed}}.log",
    params:
        ckpt=f"{RUN}/ckpt",
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(du -sh {params.ckpt} > {output}.tmp 2>/dev/null || echo 'no checkpoint' > {output}.tmp; "
        "rm -rf {params.ckpt} && mv {output}.tmp {output}) > {log} 2>&1"


rule prune_checkpoints:
    input:
        checkpoints_to_prune(),
