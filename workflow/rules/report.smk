# Tables (results/) and figures (paper_figures/) from the runs the pipeline executed.

FIGURES = expand("paper_figures/{name}.{ext}", name=["training_curves", "allocation"], ext=["pdf", "png"])


rule table1:
    input:
        scores(["base", *CFG.methods]),
        summaries=expand(f"runs/{EXP}/{{method}}/seed{{seed}}/summary.json", method=CFG.methods, seed=CFG.seeds),
    output:
        csv=report("results/table1.csv", caption="../report/table1.rst", category="Tables"),
        md="results/table1.md",
    log:
        f"logs/{EXP}/table1.log",
    params:
        methods=",".join(["base", *CFG.methods]),
        seeds=",".join(map(str, CFG.seeds)),
        benchmarks=",".join(benchmark_labels()),
    shell:
        "dynamo report --runs-root runs/{EXP} --methods {params.methods} --seeds {params.seeds} "
        "--benchmarks {params.benchmarks} --baseline grpo --out results/table1 > {log} 2>&1"


rule table2:
    input:
        scores(CFG.ablation_methods),
    output:
        csv=report("results/table2.csv", caption="../report/table2.rst", category="Tables"),
        md="results/table2.md",
    log:
        f"logs/{EXP}/table2.log",
    params:
        methods=",".join(CFG.ablation_methods),
        seeds=",".join(map(str, CFG.seeds)),
        benchmarks=",".join(benchmark_labels()),
    shell:
        "dynamo report --runs-root runs/{EXP} --methods {params.methods} --seeds {params.seeds} "
        "--benchmarks {params.benchmarks} --baseline dynamo --out results/table2 > {log} 2>&1"


rule figures:
    input:
        expand(f"runs/{EXP}/{{method}}/seed{{seed}}/summary.json", method=CFG.methods, seed=CFG.seeds),
    output:
        report(FIGURES, caption="../report/figures.rst", category="Figures"),
    log:
        f"logs/{EXP}/figures.log",
    params:
        methods=",".join(CFG.methods),
        seeds=",".join(map(str, CFG.seeds)),
    shell:
        "dynamo figures --runs-root runs/{EXP} --methods {params.methods} --seeds {params.seeds} "
        "--out paper_figures > {log} 2>&1"
