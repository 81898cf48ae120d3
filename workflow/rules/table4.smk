# Table 4: the rollout-allocation methods (config allocation_methods) at equal rollouts per step and at
# equal generated tokens, with their generation cost, and its figure. Not in `rule all`: its extra runs
# (vip, knapsack-rl, greso, pods, reinforce-ada, dynamo-nomod) would add to the default job; runs
# shared with tables 1 and 2 are reused.
#
# Equal tokens (dynamo/reporting/token_budget.py): once every equal-rollout run has finished, the
# checkpoint rule table4_token_plan finds, per method and seed, the step at which the run had generated
# the baseline's total tokens; a method that got there before its last step (DAPO's refills: dapo,
# greso; Reinforce-Ada's rounds) is trained again for that many steps into runs/<experiment>-token-matched/ and evaluated.

ALLOCATION_FIGURE = expand("paper_figures/allocation_cost.{ext}", ext=["pdf", "png"])
TOKEN_BASELINE = "grpo" if "grpo" in CFG.allocation_methods else None  # equal tokens need a baseline
TOKEQ = f"runs/{EXP}-token-matched"
TOKEQ_RUN = f"{TOKEQ}/{{method}}/seed{{seed}}"
ALLOCATION_SUMMARIES = expand(f"{RUN}/summary.json", method=CFG.allocation_methods, seed=CFG.seeds)


rule scores_allocation:
    input:
        config=f"runs/{EXP}/config.yaml",
        # the start model ("base") is the figure's first point
        scores=scores(["base", *CFG.allocation_methods]),
        summaries=ALLOCATION_SUMMARIES,
    output:
        "results/scores_allocation.csv",
    log:
        f"logs/{EXP}/scores_allocation.log",
    params:
        runs_root=lambda w, input: runs_root(input.scores[0]),
        methods=",".join(["base", *CFG.allocation_methods]),
        seeds=",".join(map(str, CFG.seeds)),
        benchmarks=",".join(benchmark_labels()),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo report --runs-root {params.runs_root} --methods {params.methods} --seeds {params.seeds} "
        "--benchmarks {params.benchmarks} --write-scores {output} > {log} 2>&1"


# The experiments table 4 is made on, the main one and the allocation study's pool (table4_hetero.smk):
# their equal-rollout runs, whose metrics the token plan reads.
TABLE4_RUNS = {
    EXP: ALLOCATION_SUMMARIES,
    SEXP: expand(f"runs/{SEXP}/{{method}}/seed{{seed}}/summary.json", method=CFG.allocation_methods, seed=CFG.seeds),
}


checkpoint table4_token_plan:
    input:
        # metrics.jsonl is complete once summary.json is written
        summaries=lambda w: TABLE4_RUNS[w.t4exp],
    output:
        "runs/{t4exp}-token-matched/plan.json",
    log:
        "logs/{t4exp}/table4_token_plan.log",
    wildcard_constraints:
        t4exp="|".join(TABLE4_RUNS),
    params:
        methods=",".join(CFG.allocation_methods),
        seeds=",".join(map(str, CFG.seeds)),
        baseline=TOKEN_BASELINE,
    conda:
        "../envs/dynamo.yaml"
    shell:
        "python -m dynamo.reporting.token_budget plan --runs-root runs/{wildcards.t4exp} --methods {params.methods} "
        "--seeds {params.seeds} --baseline {params.baseline} --out {output} > {log} 2>&1"


rule token_matched_config:
    input:
        plan="runs/{t4exp}-token-matched/plan.json",
    output:
        "runs/{t4exp}-token-matched/configs/{method}_seed{seed}.yaml",
    log:
        "logs/{t4exp}/token_matched_config/{method}_seed{seed}.log",
    wildcard_constraints:
        t4exp="|".join(TABLE4_RUNS),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "python -m dynamo.reporting.token_budget config --plan {input.plan} --method {wildcards.method} "
        "--seed {wildcards.seed} --out {output} > {log} 2>&1"


# The train rule with the plan's step count merged over the experiment's config (later file wins).
use rule train as train_token_matched with:
    input:
        config=[f"runs/{EXP}/config.yaml", f"{TOKEQ}/configs/{{method}}_seed{{seed}}.yaml"],
        model=base_model_input(),
        pool=[CFG.train_pool_path] if (CFG.data.task == "arithmetic" or STAGE.train) else [],
    output:
        final=directory(f"{TOKEQ_RUN}/final"),
        summary=f"{TOKEQ_RUN}/summary.json",
    log:
        f"logs/{EXP}/train_token_matched/{{method}}_seed{{seed}}.log",
    params:
        run_dir=TOKEQ_RUN,


use rule evaluate as evaluate_token_matched with:
    input:
        model=f"{TOKEQ_RUN}/final",
        benchmarks=local_benchmark_files(),
    output:
        expand(f"{TOKEQ_RUN}/eval/{{bench}}/scores.json", bench=benchmark_labels(), allow_missing=True),
    log:
        f"logs/{EXP}/evaluate_token_matched/{{method}}_seed{{seed}}.log",
    params:
        out=f"{TOKEQ_RUN}/eval",


TOKEN_OUTPUTS = ["results/table4_tokens.csv", "results/table4_tokens.md"] if TOKEN_BASELINE else []


rule table4:
    input:
        scores="results/scores_allocation.csv",
        config=f"runs/{EXP}/config.yaml",
        # The figure and the spread shares read each run's metrics.jsonl, finished with its summary.
        summaries=ALLOCATION_SUMMARIES,
        plan=[f"{TOKEQ}/plan.json"] if TOKEN_BASELINE else [],
        token_matched=token_matched_scores(EXP, benchmark_labels()) if TOKEN_BASELINE else [],
    output:
        csv=report("results/table4.csv", caption="../report/table4.rst", category="Tables"),
        md="results/table4.md",
        tokens=TOKEN_OUTPUTS,
        figure=report(ALLOCATION_FIGURE, caption="../report/table4.rst", category="Figures"),
        provenance="results/table4.provenance.json",
    log:
        f"logs/{EXP}/table4.log",
    params:
        runs_root=lambda w, input: runs_root(input.summaries[0]),
        methods=",".join(CFG.allocation_methods),
        benchmarks=",".join(benchmark_labels()),
        baseline=f"--baseline {TOKEN_BASELINE}" if TOKEN_BASELINE else "",
        tokens=(
            f"--token-plan {TOKEQ}/plan.json --token-runs-root {TOKEQ} --token-out results/table4_tokens"
            if TOKEN_BASELINE
            else ""
        ),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(dynamo table4 --scores {input.scores} --runs-root {params.runs_root} --methods {params.methods} "
        "--benchmarks {params.benchmarks} {params.baseline} {params.tokens} --out results/table4 "
        "--figure paper_figures/allocation_cost && python -m dynamo.reporting.provenance --config {input.config} "
        "--inputs {input.scores} {input.plan} {input.token_matched} --outputs {output.csv} {output.md} "
        "{output.tokens} {output.figure} --out {output.provenance}) > {log} 2>&1"
