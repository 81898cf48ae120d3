# The powered allocation study (docs/STUDY_ALLOCATION.md): `snakemake --cores all results/study_allocation.csv`.
# Not part of `rule all` (it takes up to ~2 hours on 2 cores). Its own pool (config.study_allocation:
# levels the main job leaves out, so that allocation has something to move), its own arms, seeds and
# pre-registered endpoint; it starts from the main experiment's start model and inherits every other
# setting. Runs go to runs/<study experiment>/, never to the main job's directories.
import json

ST = CFG.study_allocation
if ST.experiment == CFG.experiment:  # checked here: the study's own resolved config has both equal
    raise ConfigError(
        [f"config.study_allocation.experiment must differ from experiment ({EXP!r}): runs would collide"]
    )
STUDY_CFG = dataclasses.replace(
    CFG,
    experiment=ST.experiment,
    methods=list(ST.arms),
    ablation_methods=[],
    seeds=list(ST.seeds),
    data=dataclasses.replace(CFG.data, task="arithmetic", pool_size=ST.pool_size, eval_size=ST.eval_size),
    # snapshots are for the mechanism probes of the main job only
    train=dataclasses.replace(CFG.train, steps=ST.steps, snapshot_steps=[]),
    eval=dataclasses.replace(CFG.eval, benchmarks=["arith-id"], samples=ST.eval_samples, limit=0),
)
SEXP = ST.experiment
STASK = STUDY_CFG.task_dir
SRUN = f"runs/{SEXP}/{{arm}}/seed{{seed}}"
STUDY_FIGURES = expand("paper_figures/study_allocation.{ext}", ext=["pdf", "png"])
# the study's start model is the main experiment's (built by rules warmstart / build_model)
STUDY_BASE = base_model_input()


rule study_resolved_config:
    output:
        f"runs/{SEXP}/config.yaml",
    log:
        f"logs/{SEXP}/resolved_config.log",
    params:
        resolved={k: v for k, v in dataclasses.asdict(STUDY_CFG).items() if k != "fresh_runs"},
    run:
        from dynamo.io import write_text_atomic

        write_text_atomic(output[0], yaml.safe_dump(params.resolved, sort_keys=False))


rule study_make_task:
    output:
        train=f"{STASK}/train.jsonl",
        splits=expand(f"{STASK}/{{split}}.jsonl", split=ARITH_SPLITS),
        manifest=f"{STASK}/manifest.json",
    log:
        f"logs/{SEXP}/make_task.log",
    params:
        out=lambda w, output: Path(output.manifest).parent,
        weights=",".join(map(str, ST.level_weights)),
        seed=CFG.data.seed,
        pool=ST.pool_size,
        eval=ST.eval_size,
    threads: 1
    resources:
        **resources_of("data"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo make-task --out {params.out} --seed {params.seed} --pool-size {params.pool} "
        "--eval-size {params.eval} --sft-size 1 --level-weights {params.weights} > {log} 2>&1"


# The start model's per-prompt pass rates on the study pool: the share of near-solved and
# unsolvable prompts, i.e. how much heterogeneity allocation has to exploit.
rule study_start_rates:
    input:
        model=STUDY_BASE,
        pool=f"{STASK}/train.jsonl",
    output:
        f"runs/{SEXP}/start/pool/samples.jsonl",
    log:
        f"logs/{SEXP}/start_rates.log",
    params:
        model=lambda w, input: input.model or CFG.base_model_path,
        out=lambda w, output: Path(output[0]).parents[1],
        samples=ST.start_samples,
        e=STUDY_CFG.eval,
        template=lambda w: CFG.data.template,
    threads: 1
    resources:
        **resources_of("evaluate"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "OMP_NUM_THREADS={threads} dynamo evaluate --model {params.model} --benchmarks pool={input.pool} "
        "--samples {params.samples} --out {params.out} --seed 0 --temperature {params.e.temperature} "
        "--top-p {params.e.top_p} --max-new-tokens {params.e.max_new_tokens} --backend {params.e.backend} "
        "--batch-size {params.e.batch_size} --limit 0 --template {params.template:q} --no-chat-template > {log} 2>&1"


rule study_train:
    input:
        config=f"runs/{SEXP}/config.yaml",
        model=STUDY_BASE,
        pool=f"{STASK}/train.jsonl",
    output:
        final=directory(f"{SRUN}/final"),
        summary=f"{SRUN}/summary.json",
    log:
        f"logs/{SEXP}/train/{{arm}}_seed{{seed}}.log",
    wildcard_constraints:
        arm="|".join(ST.arms),
    params:
        run_dir=SRUN,
        base_model=lambda w, input: input.model or CFG.base_model_path,
        # a changed arm spec or setting reruns the job (see train.smk)
        setup=lambda w: json.dumps(
            {"method": STUDY_CFG.method(w.arm).to_dict(), "train": dataclasses.asdict(STUDY_CFG.train)},
            sort_keys=True,
        ),
        fresh=lambda w, input: "--fresh" if CFG.fresh_runs else "",
    threads: CFG.resources.train.threads
    priority: 1
    resources:
        **resources_of("train"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo train --config {input.config} --method {wildcards.arm} --seed {wildcards.seed} "
        "--out {params.run_dir} --base-model {params.base_model} --threads {threads} {params.fresh} > {log} 2>&1"


rule study_evaluate:
    input:
        model=f"{SRUN}/final",
        split=f"{STASK}/arith-id.jsonl",
    output:
        f"{SRUN}/eval/arith-id/scores.json",
    log:
        f"logs/{SEXP}/evaluate/{{arm}}_seed{{seed}}.log",
    wildcard_constraints:
        arm="|".join(ST.arms),
    params:
        out=f"{SRUN}/eval",
        e=STUDY_CFG.eval,
        template=lambda w: CFG.data.template,
    threads: CFG.resources.evaluate.threads
    resources:
        **resources_of("evaluate"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "OMP_NUM_THREADS={threads} dynamo evaluate --model {input.model} --benchmarks arith-id={input.split} "
        "--samples {params.e.samples} --out {params.out} --seed {wildcards.seed} --temperature {params.e.temperature} "
        "--top-p {params.e.top_p} --max-new-tokens {params.e.max_new_tokens} --backend {params.e.backend} "
        "--batch-size {params.e.batch_size} --limit 0 --template {params.template:q} --no-chat-template > {log} 2>&1"


# The start model on the endpoint, with each seed's evaluation sampling: did training move the endpoint at
# all? If the baseline does not beat its own start model, no arm can be expected to beat the baseline.
rule study_evaluate_start:
    input:
        model=STUDY_BASE,
        split=f"{STASK}/arith-id.jsonl",
    output:
        f"runs/{SEXP}/start/seed{{seed}}/eval/arith-id/scores.json",
    log:
        f"logs/{SEXP}/evaluate/start_seed{{seed}}.log",
    wildcard_constraints:
        seed=r"\d+",
    params:
        model=lambda w, input: input.model or CFG.base_model_path,
        out=f"runs/{SEXP}/start/seed{{seed}}/eval",
        e=STUDY_CFG.eval,
        template=lambda w: CFG.data.template,
    threads: CFG.resources.evaluate.threads
    resources:
        **resources_of("evaluate"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "OMP_NUM_THREADS={threads} dynamo evaluate --model {params.model} --benchmarks arith-id={input.split} "
        "--samples {params.e.samples} --out {params.out} --seed {wildcards.seed} --temperature {params.e.temperature} "
        "--top-p {params.e.top_p} --max-new-tokens {params.e.max_new_tokens} --backend {params.e.backend} "
        "--batch-size {params.e.batch_size} --limit 0 --template {params.template:q} --no-chat-template > {log} 2>&1"


rule study_table:
    input:
        config=f"runs/{SEXP}/config.yaml",
        start=f"runs/{SEXP}/start/pool/samples.jsonl",
        start_scores=expand(f"runs/{SEXP}/start/seed{{seed}}/eval/arith-id/scores.json", seed=ST.seeds),
        scores=expand(f"runs/{SEXP}/{{arm}}/seed{{seed}}/eval/arith-id/scores.json", arm=ST.arms, seed=ST.seeds),
        summaries=expand(f"runs/{SEXP}/{{arm}}/seed{{seed}}/summary.json", arm=ST.arms, seed=ST.seeds),
    output:
        csv=report("results/study_allocation.csv", category="Tables"),
        md="results/study_allocation.md",
        figures=report(STUDY_FIGURES, category="Figures"),
        provenance="results/study_allocation.provenance.json",
    log:
        f"logs/{SEXP}/study_table.log",
    params:
        runs_root=lambda w, input: Path(input.config).parent,
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(python -m dynamo.reporting.study --config {input.config} --runs-root {params.runs_root} "
        "--start {input.start} --start-runs {params.runs_root}/start --out results/study_allocation --figure paper_figures/study_allocation && "
        "python -m dynamo.reporting.provenance --config {input.config} --outputs {output.csv} {output.md} "
        "{output.figures} --out {output.provenance}) > {log} 2>&1"
