# Table 4 on the allocation study's heterogeneous pool (docs/ALLOCATION_METHODS.md):
# `snakemake --cores all results/table4_hetero.csv`. Not in `rule all`.
# The allocation methods (config allocation_methods) for the main experiment's seeds, trained and
# evaluated exactly as the study's arms are (its pool, steps, start model and endpoint split, through
# the study's own rules), so the study's runs of the arms it shares (grpo, dynamo-nomod) are reused
# and the others go beside them in runs/<study experiment>/<method>/seed<s>; the study reads only its
# arms, so its report is unchanged. Equal tokens and the figure as for table 4 (table4.smk).

HETERO_EXTRA = [m for m in CFG.allocation_methods if m not in ST.arms]  # trained by the rules below
HETERO_TOKEQ = f"runs/{SEXP}-token-matched"
HETERO_TOKEQ_RUN = f"{HETERO_TOKEQ}/{{arm}}/seed{{seed}}"
HETERO_FIGURE = expand("paper_figures/allocation_cost_hetero.{ext}", ext=["pdf", "png"])
HETERO_TOKEN_OUTPUTS = ["results/table4_hetero_tokens.csv", "results/table4_hetero_tokens.md"] if TOKEN_BASELINE else []

if HETERO_EXTRA:

    use rule study_train as table4_hetero_train with:
        wildcard_constraints:
            arm="|".join(HETERO_EXTRA),


# The start model on the endpoint split (the figure's first point) and the methods the study lacks.
use rule study_evaluate as table4_hetero_evaluate with:
    input:
        model=lambda w: STUDY_BASE if w.arm == "base" else f"runs/{SEXP}/{w.arm}/seed{w.seed}/final",
        split=f"{STASK}/arith-id.jsonl",
    wildcard_constraints:
        arm="|".join(["base", *HETERO_EXTRA]),


use rule study_train as table4_hetero_train_token_matched with:
    input:
        config=[f"runs/{SEXP}/config.yaml", f"{HETERO_TOKEQ}/configs/{{arm}}_seed{{seed}}.yaml"],
        model=STUDY_BASE,
        pool=f"{STASK}/train.jsonl",
    output:
        final=directory(f"{HETERO_TOKEQ_RUN}/final"),
        summary=f"{HETERO_TOKEQ_RUN}/summary.json",
    log:
        f"logs/{SEXP}/train_token_matched/{{arm}}_seed{{seed}}.log",
    wildcard_constraints:
        arm="|".join(CFG.allocation_methods),
    params:
        run_dir=HETERO_TOKEQ_RUN,


use rule study_evaluate as table4_hetero_evaluate_token_matched with:
    input:
        model=f"{HETERO_TOKEQ_RUN}/final",
        split=f"{STASK}/arith-id.jsonl",
    output:
        f"{HETERO_TOKEQ_RUN}/eval/arith-id/scores.json",
    log:
        f"logs/{SEXP}/evaluate_token_matched/{{arm}}_seed{{seed}}.log",
    wildcard_constraints:
        arm="|".join(CFG.allocation_methods),
    params:
        out=f"{HETERO_TOKEQ_RUN}/eval",


rule scores_allocation_hetero:
    input:
        config=f"runs/{SEXP}/config.yaml",
        scores=expand(
            f"runs/{SEXP}/{{method}}/seed{{seed}}/eval/arith-id/scores.json",
            method=["base", *CFG.allocation_methods],
            seed=CFG.seeds,
        ),
        summaries=TABLE4_RUNS[SEXP],
    output:
        "results/scores_allocation_hetero.csv",
    log:
        f"logs/{SEXP}/scores_allocation_hetero.log",
    params:
        runs_root=lambda w, input: runs_root(input.summaries[0]),
        methods=",".join(["base", *CFG.allocation_methods]),
        seeds=",".join(map(str, CFG.seeds)),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo report --runs-root {params.runs_root} --methods {params.methods} --seeds {params.seeds} "
        "--benchmarks arith-id --write-scores {output} > {log} 2>&1"


rule table4_hetero:
    input:
        scores="results/scores_allocation_hetero.csv",
        config=f"runs/{SEXP}/config.yaml",
        summaries=TABLE4_RUNS[SEXP],
        plan=[f"{HETERO_TOKEQ}/plan.json"] if TOKEN_BASELINE else [],
        token_matched=token_matched_scores(SEXP, ["arith-id"]) if TOKEN_BASELINE else [],
    output:
        csv=report("results/table4_hetero.csv", caption="../report/table4.rst", category="Tables"),
        md="results/table4_hetero.md",
        tokens=HETERO_TOKEN_OUTPUTS,
        figure=report(HETERO_FIGURE, caption="../report/table4.rst", category="Figures"),
        provenance="results/table4_hetero.provenance.json",
    log:
        f"logs/{SEXP}/table4_hetero.log",
    params:
        runs_root=lambda w, input: runs_root(input.summaries[0]),
        methods=",".join(CFG.allocation_methods),
        baseline=f"--baseline {TOKEN_BASELINE}" if TOKEN_BASELINE else "",
        tokens=(
            f"--token-plan {HETERO_TOKEQ}/plan.json --token-runs-root {HETERO_TOKEQ} "
            "--token-out results/table4_hetero_tokens"
            if TOKEN_BASELINE
            else ""
        ),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(dynamo table4 --scores {input.scores} --runs-root {params.runs_root} --methods {params.methods} "
        "--benchmarks arith-id {params.baseline} {params.tokens} --out results/table4_hetero "
        "--figure paper_figures/allocation_cost_hetero && python -m dynamo.reporting.provenance "
        "--config {input.config} --inputs {input.scores} {input.plan} {input.token_matched} --outputs "
        "{output.csv} {output.md} {output.tokens} {output.figure} --out {output.provenance}) > {log} 2>&1"
