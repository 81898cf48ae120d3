# DynaMO reproduction pipeline.
#   snakemake --cores all results/table1.csv                 # embedded CPU experiment (default config)
#   snakemake --cores all results/table3.csv                 # mechanism checks at policy snapshots
#   snakemake --cores all results/study_allocation.csv       # the powered allocation study (not in all)
#   snakemake --cores all results/table4.csv                 # allocation methods at equal rollouts and tokens (not in all)
#   snakemake --cores all results/table4_hetero.csv          # the same on the allocation study's pool (not in all)
#   snakemake results/table1.csv --cores all --configfile config/smoke.yaml
#   snakemake results/table1.csv --profile workflow/profiles/slurm --configfile config/experiments/qwen2.5-math-7b.yaml
# Stages: data -> base model (build + warm start) -> train (method x seed) -> evaluate -> report.
# The rules are in workflow/rules/. Snakemake reads profiles/default/ (rerun-incomplete) because it sits
# beside this file: keep the two together.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/stage.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/study.smk"  # results/study_allocation.csv, not in rule all
include: "workflow/rules/table4.smk"  # results/table4.csv, not in rule all
include: "workflow/rules/table4_hetero.smk"  # results/table4_hetero.csv, not in rule all


rule all:
    input:
        "results/table1.csv",
        "results/table2.csv",
        "results/table3.csv",
        FIGURES,
        PROBE_FIGURES,  # named too, so that deleted figures are made again
        checkpoints_to_prune(),  # empty unless openrlhf.delete_checkpoints_after_eval
    default_target: True
