# Evaluation of every trained model (and of the shared base model, the reference row) on the
# configured benchmarks: k samples per problem, graded, Pass@1 and Pass@k.


rule evaluate:
    input:
        model=model_to_evaluate,
        benchmarks=local_benchmark_files(),
    output:
        expand(f"{RUN}/eval/{{bench}}/scores.json", bench=benchmark_labels(), allow_missing=True),
    log:
        f"logs/{EXP}/evaluate/{{method}}_seed{{seed}}.log",
    params:
        model=lambda w, input: input.model or CFG.base_model_path,
        out=f"{RUN}/eval",
        benchmarks=benchmark_spec(),
        e=CFG.eval,
        template=lambda w: CFG.data.template,  # a lambda: its {problem} is no wildcard
        chat="--chat-template" if CFG.data.use_chat_template else "--no-chat-template",
        offline=OFFLINE_ENV,
    threads: CFG.resources.evaluate.threads
    resources:
        **resources_of("evaluate"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "{params.offline}OMP_NUM_THREADS={threads} dynamo evaluate --model {params.model} --benchmarks {params.benchmarks} "
        "--samples {params.e.samples} --out {params.out} --seed {wildcards.seed} "
        "--temperature {params.e.temperature} --top-p {params.e.top_p} --max-new-tokens {params.e.max_new_tokens} "
        "--backend {params.e.backend} --batch-size {params.e.batch_size} --limit {params.e.limit} "
        "--over-long {params.e.over_long} "
        "--template {params.template:q} {params.chat} > {log} 2>&1"
