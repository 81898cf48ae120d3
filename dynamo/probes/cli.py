"""`dynamo probe`: mechanism checks of DynaMO's claims at saved policy snapshots.

    dynamo probe measure --config runs/embedded/config.yaml --run runs/embedded/dynamo/seed1 --seed 1 \\
        --out runs/embedded/probes/seed1.json
    dynamo probe report --inputs runs/embedded/probes/seed1.json --runs-root runs/embedded --seeds 1,2,3 \\
        --out results/table3 --figures paper_figures

`measure` restores each snapshot of one run (see dynamo/probes/measure.py) and writes the raw
measurements; `report` turns one or more of those files into results/table3.{csv,md} and the
figures paper_figures/probe_{allocation,indicator,stabilization,compensation}.{pdf,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynamo.io import write_json_atomic


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="mode", required=True)
    m = sub.add_parser("measure", help="run the probes on one run's snapshots")
    m.add_argument("--config", nargs="+", required=True, help="experiment YAML file(s), merged left to right")
    m.add_argument("--run", required=True, help="run directory holding snapshots/step<k>/")
    m.add_argument("--seed", type=int, required=True, help="the run's seed (also seeds the probes)")
    m.add_argument("--out", required=True, help="JSON file of raw measurements")
    m.add_argument("--threads", type=int, help="torch threads (default: config train.threads)")
    m.add_argument("--steps", help="comma-separated snapshot steps to probe (default: every snapshot)")
    r = sub.add_parser("report", help="table 3 and the probe figures from measurement files")
    r.add_argument("--inputs", nargs="+", required=True, help="JSON files written by `dynamo probe measure`")
    r.add_argument("--runs-root", required=True, help="runs/<experiment> (entropy trajectories)")
    r.add_argument("--with-stab", default="dynamo", help="method with beta_stab for the trajectory row")
    r.add_argument("--without-stab", default="dynamo-nostab", help="the same method without beta_stab")
    r.add_argument("--seeds", required=True, help="comma-separated seeds of the trajectory runs")
    r.add_argument("--out", default="results/table3", help="output stem (.csv and .md are written)")
    r.add_argument("--figures", default="paper_figures", help="figure directory")


def run(args: argparse.Namespace) -> int:
    if args.mode == "measure":
        from dynamo.config import load_config
        from dynamo.probes.measure import run_probes

        cfg = load_config(*args.config)
        steps = [int(x) for x in args.steps.split(",")] if args.steps else None
        result = run_probes(cfg, args.run, args.seed, threads=args.threads, snapshot_steps=steps)
        write_json_atomic(Path(args.out), result)
        print(f"[dynamo probe] wrote {args.out} in {result['seconds']:.0f} s")
        return 0
    from dynamo.probes import figures
    from dynamo.probes.measure import PROBE_FORMAT
    from dynamo.probes.report import allocation_rows, one_step_rows, stab_producible, trajectory_row, write_table

    files = [json.loads(Path(p).read_text()) for p in args.inputs]
    for path, f in zip(args.inputs, files):
        if f.get("format") != PROBE_FORMAT:
            raise SystemExit(
                f"dynamo probe report: {path} is format {f.get('format')!r}, expected {PROBE_FORMAT!r}: "
                "rerun `dynamo probe measure` for it (delete the file, then rerun the table-3 target)"
            )
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_root = Path(args.runs_root)
    cells = [c for f in files for c in f["allocation"]]
    steps = [{**s, "run_dir": f["run_dir"]} for f in files for s in f["one_step"]]
    rows = allocation_rows(cells) + one_step_rows(steps)
    rows.append(trajectory_row(runs_root, args.with_stab, args.without_stab, seeds, stab_producible(steps)))
    snaps: dict[str, set[int]] = {}
    for f in files:
        snaps.setdefault(f["run_dir"], set()).update(f["snapshots"])
    probed = ", ".join(f"{run} (snapshots {sorted(s)})" for run, s in snaps.items())
    note = (
        f"Probed: {probed}. Rows pool all snapshots ('all'); per-snapshot rows are in the CSV. "
        "Verdict: 'supports' when the 95% interval lies on the side the claim predicts, 'contradicts' "
        "when it lies on the other side, 'insensitive by construction' when it contains the no-effect value "
        "and the mechanism, as measured, cannot move the row by what it resolves (the reason follows the "
        "verdict), else 'not distinguishable'; 'diagnostic' rows carry no claim. Intervals are over "
        "independent units "
        "(allocation: snapshot x prompt-set cells; one-step rows: snapshots, batches averaged within each; "
        "trajectories: seeds). Dilution: the engine's token-mean weights a prompt by its share of the batch's "
        "tokens, so moving samples out of zero-advantage groups raises its raw norm and trace whatever the "
        "noise does; the fixed-target and common-reference rows are the comparisons. The fixed-target row "
        "uses the method's group advantages; with a constant pool baseline instead (diagnostic) a sample's "
        "variance grows with P_i, for which n_i ~ sqrt(P_i), not P_i, minimises the variance. See docs/PROBES.md."
    )
    out = Path(args.out)
    write_table(rows, out, note)
    source = f"probes of {probed}; trajectories {runs_root}/{{{args.with_stab},{args.without_stab}}}"
    fig_dir = Path(args.figures)
    figures.allocation_figure(rows, fig_dir / "probe_allocation", source)
    figures.indicator_figure(rows, files, fig_dir / "probe_indicator", source)
    figures.stabilization_figure(
        rows, runs_root, (args.with_stab, args.without_stab), seeds, fig_dir / "probe_stabilization", source, files
    )
    figures.compensation_figure(rows, files, fig_dir / "probe_compensation", source)
    print(f"wrote {out}.csv, {out}.md and {fig_dir}/probe_*.{{pdf,png}}")
    return 0
