#!/usr/bin/env bash
# A one-node SLURM cluster on this machine: Debian's slurm-wlm and munge, slurmctld and slurmd run directly
# (no systemd needed), partition `main` holding this host with its CPUs and memory. For CI and for trying
# the SLURM profile on one machine (docs/cluster.md); a real site has its own cluster.
#
#   .ci/slurm.sh          # start (idempotent: a running, idle cluster is left as it is), then wait for idle
#   .ci/slurm.sh stop     # stop the daemons this script started
#
# Needs root (it writes $SLURM_CONF and runs the daemons). Prints one line and exits non-zero when the
# cluster cannot be started. Packages come from .ci/apt-packages.txt (slurm-wlm, munge); installed here
# too when missing.
set -uo pipefail

CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
STATE=${ONE_NODE_SLURM_DIR:-/var/spool/one-node-slurm}   # state, spool, pid and log files
HOST=$(hostname -s)

die() { echo "one-node-slurm: $*" >&2; exit 1; }

stop() {
  local name pid
  for name in slurmd slurmctld munged; do
    pid=$(cat "$STATE/$name.pid" 2>/dev/null) || continue
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$STATE/$name.pid"
  done
  echo "one-node-slurm: stopped the daemons started from $STATE"
}

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1; }

if [ "${1:-start}" = "stop" ]; then stop; exit 0; fi
[ "$(id -u)" = "0" ] || die "needs root to write $CONF and run slurmctld/slurmd (now uid $(id -u))"

# 1. The packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurmctld/slurmd/munged missing and no apt-get to install slurm-wlm munge"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >/dev/null 2>&1 \
    || die "could not install slurm-wlm and munge with apt-get"
fi

# 2. The configuration: this host, its CPUs and (most of) its memory, one partition.
CPUS=$(nproc)
MEM_MB=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')
mkdir -p "$STATE/ctld" "$STATE/d" "$(dirname "$CONF")"
WANT=$(cat <<EOF
# Written by .ci/slurm.sh: a one-node cluster for CI (docs/cluster.md).
ClusterName=onenode
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
# memory is sampled each second and a job over its --mem is killed (state OUT_OF_MEMORY): what a site's
# cgroups do, without needing them; the failure test of tests/test_slurm.py relies on it
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to squeue (the plugin's status command without accounting) for an hour
MinJobAge=3600
# a request no node of its partition can meet is refused by sbatch, never left pending
EnforcePartLimits=ALL
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$(node_state)" = "idle" ] && [ "$(cat "$CONF" 2>/dev/null)" = "$WANT" ]; then
  echo "one-node-slurm: already up: node $HOST idle in partition main ($CPUS CPUs, $MEM_MB MB)"
  exit 0
fi
printf '%s\n' "$WANT" > "$CONF"

# 3. munge: a key, then munged (as the munge user, as its package runs it).
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  (umask 077; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none) || die "could not create /etc/munge/munge.key"
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || pgrep -n -x munged > "$STATE/munged.pid"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged started but munge -n | unmunge fails"
fi

# 4. The daemons, restarted when running with another configuration.
for name in slurmd slurmctld; do
  pid=$(cat "$STATE/$name.pid" 2>/dev/null)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"   # and wait for it to end: a slurmctld still shutting down holds the port
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
done
pgrep -x slurmctld >/dev/null && die "a slurmctld not started by this script is running (pid $(pgrep -x slurmctld))"
slurmctld -f "$CONF" || die "slurmctld did not start (see $STATE/slurmctld.log)"
slurmd -f "$CONF" || die "slurmd did not start (see $STATE/slurmd.log)"

# 5. Wait until the node is idle.
for _ in $(seq 60); do
  state=$(node_state)
  [ "$state" = "idle" ] && break
  case "$state" in drain*|down*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 ;; esac
  sleep 1
done
[ "$(node_state)" = "idle" ] || die "node $HOST is '$(node_state)', not idle after 60 s (see $STATE/slurmctld.log, $STATE/slurmd.log)"
echo "one-node-slurm: up: node $HOST idle in partition main ($CPUS CPUs, $MEM_MB MB), config $CONF"
