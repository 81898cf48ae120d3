#!/usr/bin/env bash
# A real single-node Slurm on localhost for tests/test_slurm.py (Debian 12, root).
# Adapted from shared/tools/slurm/start.sh (kept here so the project carries its own harness):
# installs slurmctld/slurmd/munge from Debian if missing, writes /etc/slurm/slurm.conf (the
# jobstep plugin strips SLURM_CONF, so the config must live there), starts the daemons by hand
# (no systemd, no cgroups: memory limits are not enforced) and waits until the node is idle.
# No slurmdbd: the test profile polls with squeue instead of sacct.
# Usage: SLURM_BASE=/tmp/dir tests/slurm/start.sh   (stop.sh with the same SLURM_BASE undoes it)
set -euo pipefail
B=${SLURM_BASE:-/tmp/dynamo-slurm}; H=$(hostname -s)
P="slurmctld slurmd slurm-client munge"
dpkg -s $P >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $P >/dev/null; }
mkdir -p "$B"/{ctld,d,log} /run/munge /etc/slurm
[ -s /etc/munge/munge.key ] || mungekey --create --force
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
pgrep -x munged >/dev/null || { runuser -u munge -- /usr/sbin/munged; touch "$B/started-munged"; }
MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1280 ))   # 80% of RAM in MB
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=dynamo-ci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$B/log/jobcomp.txt
StateSaveLocation=$B/ctld
SlurmdSpoolDir=$B/d
SlurmctldPidFile=$B/slurmctld.pid
SlurmdPidFile=$B/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld; slurmd
for i in $(seq 60); do [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.5; done
sinfo; [ "$(sinfo -h -o %T)" = idle ]
