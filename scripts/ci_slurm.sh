#!/usr/bin/env bash
# A one-node Slurm on this machine, for the Slurm test of the sweep (tests/test_sweep.py):
# installs slurm-wlm and munge (Debian/Ubuntu, as root, no systemd needed), writes a minimal
# slurm.conf for this node (processes tracked by parentage, proctrack/linuxproc, and no task
# plugin, so no cgroup is needed; no accounting), and starts munged, slurmctld and slurmd.
# Idempotent: what is installed or running already is left as it is. On a Debian 12 machine
# with 2 cores it took 18 s to install and 1 s to start.
#
#   sudo scripts/ci_slurm.sh          # then: sinfo; pytest tests/test_sweep.py -k real_slurm
#   sudo scripts/ci_slurm.sh stop     # stop the three daemons
#
# CPUS (default: nproc) and MEMORY_MB (default: 90 % of MemTotal) size the node.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
NODE=localhost
PARTITION=ci
CPUS=${CPUS:-$(nproc)}
MEMORY_MB=${MEMORY_MB:-$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)}

say() { echo "ci_slurm: $*"; }

stop_daemons() {  # $1: "all" also stops munged
  local files="/run/slurmd.pid /run/slurmctld.pid"
  [ "${1:-}" = all ] && files="$files /run/munge/munged.pid"
  for pidfile in $files; do
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")"
      say "stopped $(basename "$pidfile" .pid)"
    fi
  done
}

if [ "${1:-}" = "stop" ]; then
  stop_daemons all
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "ci_slurm: run as root (it installs packages and starts daemons)" >&2
  exit 2
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends slurm-wlm munge
fi

# munge: a key, its folders, the daemon
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n >/dev/null 2>&1; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi

mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > "$CONF.new" <<EOF
# Written by scripts/ci_slurm.sh: one node, no cgroup tracking, no accounting.
ClusterName=ci
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$CONF.new" "$CONF"; then
  mv "$CONF.new" "$CONF"
  say "wrote $CONF"
  stop_daemons  # a changed configuration needs fresh daemons
else
  rm -f "$CONF.new"
fi

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running /run/slurmctld.pid; then
  say "starting slurmctld"
  /usr/sbin/slurmctld -i
fi
if ! running /run/slurmd.pid; then
  say "starting slurmd"
  /usr/sbin/slurmd -N "$NODE"
fi

for _ in $(seq 60); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  case "$state" in
    idle*|mixed*|alloc*) say "node $NODE is $state"; sinfo; exit 0 ;;
  esac
  sleep 0.5
done
say "the node did not come up (sinfo: ${state:-no answer}); see /var/log/slurm/" >&2
exit 1
