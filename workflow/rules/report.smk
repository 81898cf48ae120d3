# Tables (results/) and figures (paper_figures/) from the runs the pipeline executed.

FIGURES = expand("paper_figures/{name}.{ext}", name=["training_curves", "allocation"], ext=["pdf", "png"])


# Tables: every evaluated run's scores go into a long (tidy) file first, results/scores.csv
# (table 1's runs: the main job) and results/scores_ablations.csv (table 2's runs, so that the
# main job does not train the ablations); each table is derived from its file with pandas.
PAPER_REFERENCE = f"--paper-reference {CFG.report.paper_reference}" if CFG.report.paper_reference else ""


rule scores:
    input:
        config=f"runs/{EXP}/config.yaml",
        scores=scores(["base", *CFG.methods]),
        summaries=expand(f"runs/{EXP}/{{method}}/seed{{seed}}/summary.json", method=CFG.methods, seed=CFG.seeds),
    output:
        "results/scores.csv",
    log:
        f"logs/{EXP}/scores.log",
    params:
        runs_root=lambda w, input: runs_root(input.scores[0]),
        methods=",".join(["base", *CFG.methods]),
        seeds=",".join(map(str, CFG.seeds)),
        benchmarks=",".join(benchmark_labels()),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo report --runs-root {params.runs_root} --methods {params.methods} --seeds {params.seeds} "
        "--benchmarks {params.benchmarks} --write-scores {output} > {log} 2>&1"


rule scores_ablations:
    input:
        config=f"runs/{EXP}/config.yaml",
        scores=scores(CFG.ablation_methods),
        summaries=expand(
            f"runs/{EXP}/{{method}}/seed{{seed}}/summary.json", method=CFG.ablation_methods, seed=CFG.seeds
        ),
    output:
        "results/scores_ablations.csv",
    log:
        f"logs/{EXP}/scores_ablations.log",
    params:
        runs_root=lambda w, input: runs_root(input.scores[0]),
        methods=",".join(CFG.ablation_methods),
        seeds=",".join(map(str, CFG.seeds)),
        benchmarks=",".join(benchmark_labels()),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo report --runs-root {params.runs_root} --methods {params.methods} --seeds {params.seeds} "
        "--benchmarks {params.benchmarks} --write-scores {output} > {log} 2>&1"


rule table1:
    input:
        scores="results/scores.csv",
        config=f"runs/{EXP}/config.yaml",
    output:
        csv=report("results/table1.csv", caption="../report/table1.rst", category="Tables"),
        md="results/table1.md",
        provenance="results/table1.provenance.json",
    log:
        f"logs/{EXP}/table1.log",
    params:
        methods=",".join(["base", *CFG.methods]),
        benchmarks=",".join(benchmark_labels()),
        baseline="--baseline grpo" if "grpo" in CFG.methods else "",  # compared with, when it ran
        reference=PAPER_REFERENCE,
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(dynamo report --scores {input.scores} --methods {params.methods} --benchmarks {params.benchmarks} "
        "{params.baseline} {params.reference} --out results/table1 && python -m dynamo.reporting.provenance --config {input.config} "
        "--inputs {input.scores} --outputs {output.csv} {output.md} --out {output.provenance}) > {log} 2>&1"


rule table2:
    input:
        scores="results/scores_ablations.csv",
        config=f"runs/{EXP}/config.yaml",
    output:
        csv=report("results/table2.csv", caption="../report/table2.rst", category="Tables"),
        md="results/table2.md",
        provenance="results/table2.provenance.json",
    log:
        f"logs/{EXP}/table2.log",
    params:
        methods=",".join(CFG.ablation_methods),
        benchmarks=",".join(benchmark_labels()),
        baseline="--baseline dynamo" if "dynamo" in CFG.ablation_methods else "",
        # beta_comp's null model against beta_comp alone: does compensation do more than a constant scale?
        compare=(
            "--compare dynamo-posscale:dynamo-nostab"
            if {"dynamo-posscale", "dynamo-nostab"} <= set(CFG.ablation_methods)
            else ""
        ),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(dynamo report --scores {input.scores} --methods {params.methods} --benchmarks {params.benchmarks} "
        "{params.baseline} {params.compare} --out results/table2 && python -m dynamo.reporting.provenance --config {input.config} "
        "--inputs {input.scores} --outputs {output.csv} {output.md} --out {output.provenance}) > {log} 2>&1"


rule figures:
    input:
        config=f"runs/{EXP}/config.yaml",
        summaries=expand(f"runs/{EXP}/{{method}}/seed{{seed}}/summary.json", method=CFG.methods, seed=CFG.seeds),
    output:
        figures=report(FIGURES, caption="../report/figures.rst", category="Figures"),
        provenance="paper_figures/figures.provenance.json",
    log:
        f"logs/{EXP}/figures.log",
    params:
        runs_root=lambda w, input: runs_root(input.summaries[0]),
        methods=",".join(CFG.methods),
        seeds=",".join(map(str, CFG.seeds)),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(dynamo figures --runs-root {params.runs_root} --methods {params.methods} --seeds {params.seeds} "
        "--out paper_figures && python -m dynamo.reporting.provenance --config {input.config} "
        "--inputs {input.summaries} --outputs {output.figures} --out {output.provenance}) > {log} 2>&1"
