# Evaluation of every trained model (and of the shared base model, the reference row) on the
# configured benchmarks: k samples per problem, graded, Pass@1 and Pass@k.


def model_to_evaluate(wildcards):
    if wildcards.method == "base":
        return base_model_input()
    return f"runs/{EXP}/{wildcards.method}/seed{wildcards.seed}/final"


rule evaluate:
    input:
        model=model_to_evaluate,
        benchmarks=local_benchmark_files(),
    output:
        expand(f"{RUN}/eval/{{bench}}/scores.json", bench=benchmark_labels(), allow_missing=True),
    log:
        f"logs/{EXP}/evaluate/{{method}}_seed{{seed}}.log",
    params:
        model=lambda w: CFG.base_model_path if w.method == "base" else f"runs/{EXP}/{w.method}/seed{w.seed}/final",
        out=f"{RUN}/eval",
        benchmarks=benchmark_spec(),
        e=CFG.eval,
        template=CFG.data.template,
        chat="--chat-template" if CFG.data.use_chat_template else "",
    threads: CFG.resources.evaluate.threads
    resources:
        **resources_of("evaluate"),
    shell:
        "OMP_NUM_THREADS={threads} dynamo evaluate --model {params.model} --benchmarks {params.benchmarks} "
        "--samples {params.e.samples} --out {params.out} --seed {wildcards.seed} "
        "--temperature {params.e.temperature} --top-p {params.e.top_p} --max-new-tokens {params.e.max_new_tokens} "
        "--backend {params.e.backend} --batch-size {params.e.batch_size} --limit {params.e.limit} "
        "--template {params.template:q} {params.chat} > {log} 2>&1"
