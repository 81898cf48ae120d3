#!/usr/bin/env bash
# Stops what tests/slurm/start.sh started (same SLURM_BASE): jobs, slurmd, slurmctld, and munged
# only if start.sh started it. Safe to run twice or after a failed start.
B=${SLURM_BASE:-/tmp/dynamo-slurm}
scancel --user=root 2>/dev/null || true
pids="$B/slurmd.pid $B/slurmctld.pid"
[ -e "$B/started-munged" ] && pids="$pids /run/munge/munged.pid"
for f in $pids; do
  [ -s "$f" ] || continue; p=$(cat "$f"); kill "$p" 2>/dev/null || { rm -f "$f"; continue; }
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$p" 2>/dev/null && kill -9 "$p"; rm -f "$f"
done
rm -f "$B/started-munged" /etc/slurm/slurm.conf
