# Mechanism checks (results/table3 + one figure per claim): probes at the policy snapshots that
# the runs of `probe.method` save (train.snapshot_steps), and the entropy trajectories of that
# method with and without beta_stab. See docs/PROBES.md.

PROBE_FIGURES = expand(
    "paper_figures/{name}.{ext}",
    name=["probe_allocation", "probe_indicator", "probe_stabilization", "probe_compensation"],
    ext=["pdf", "png"],
)
PROBE_METHOD = CFG.probe.method
PROBE_STEPS = sorted({s for s in CFG.train.snapshot_steps if s <= CFG.train.steps})


# One job per (seed, snapshot): the snapshots are independent, so they run in parallel.
rule probe_measure:
    input:
        config=f"runs/{EXP}/config.yaml",
        summary=f"runs/{EXP}/{PROBE_METHOD}/seed{{seed}}/summary.json",
    output:
        f"runs/{EXP}/probes/{PROBE_METHOD}_seed{{seed}}_step{{step}}.json",
    log:
        f"logs/{EXP}/probes/{PROBE_METHOD}_seed{{seed}}_step{{step}}.log",
    params:
        run_dir=lambda w, input: str(Path(input.summary).parent),
    threads: CFG.resources.probe.threads
    resources:
        **resources_of("probe"),
    conda:
        "../envs/dynamo.yaml"
    shell:
        "dynamo probe measure --config {input.config} --run {params.run_dir} --seed {wildcards.seed} "
        "--steps {wildcards.step} --out {output} --threads {threads} > {log} 2>&1"


rule table3:
    input:
        config=f"runs/{EXP}/config.yaml",
        probes=expand(
            f"runs/{EXP}/probes/{PROBE_METHOD}_seed{{seed}}_step{{step}}.json",
            seed=CFG.probe.seeds,
            step=PROBE_STEPS,
        ),
        trajectories=expand(
            f"runs/{EXP}/{{method}}/seed{{seed}}/summary.json", method=[PROBE_METHOD, STAB_OFF], seed=CFG.seeds
        ),
    output:
        csv=report("results/table3.csv", caption="../report/table3.rst", category="Tables"),
        md="results/table3.md",
        figures=report(PROBE_FIGURES, caption="../report/probes.rst", category="Figures"),
        provenance="results/table3.provenance.json",
    log:
        f"logs/{EXP}/table3.log",
    params:
        runs_root=lambda w, input: runs_root(input.trajectories[0]),
        seeds=",".join(map(str, CFG.seeds)),
        stab_on=PROBE_METHOD,
        stab_off=STAB_OFF,
    conda:
        "../envs/dynamo.yaml"
    shell:
        "(dynamo probe report --inputs {input.probes} --runs-root {params.runs_root} --with-stab {params.stab_on} "
        "--without-stab {params.stab_off} --seeds {params.seeds} --out results/table3 --figures paper_figures && "
        "python -m dynamo.reporting.provenance --config {input.config} --inputs {input.probes} {input.trajectories} "
        "--outputs {output.csv} {output.md} "
        "{output.figures} --out {output.provenance}) > {log} 2>&1"
