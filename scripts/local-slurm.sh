#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, for the Slurm integration test (tests/slurm.rs) and
# for trying `gradlab sweep --slurm` on one machine. Debian 12 packages (Slurm 22.05), run as
# root; no systemd, no cgroups, no accounting (so no sacct: use squeue and scontrol).
#
#   scripts/local-slurm.sh setup   install slurmctld, slurmd, slurm-client, munge; start them
#   scripts/local-slurm.sh check   a 4-task job array, to see that it works
#   scripts/local-slurm.sh stop    stop the daemons (by pid)
#
# State and logs live under $BASE (default /tmp/local-slurm).
set -euo pipefail
BASE=${BASE:-/tmp/local-slurm}

setup() {
  mkdir -p "$BASE"/{state,spool,log}
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi

  # munge: a key (the package's postinst normally makes one) and the daemon.
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 755 /run/munge
  pgrep -F /run/munge/munged.pid >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null

  local host cpus mem
  host=$(hostname -s)
  read -r cpus mem < <(slurmd -C | awk '/^NodeName/{for(i=1;i<=NF;i++){split($i,a,"=");
    if(a[1]=="CPUs")c=a[2]; if(a[1]=="RealMemory")m=a[2]}; print c, m}')
  mkdir -p /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

  # Each daemon forks into the background and writes its pid file; -i tolerates old state.
  pgrep -F "$BASE/slurmctld.pid" >/dev/null 2>&1 || slurmctld -i
  pgrep -F "$BASE/slurmd.pid" >/dev/null 2>&1 || slurmd
  for _ in $(seq 1 30); do
    sinfo -h -o %T 2>/dev/null | grep -qx idle && break
    sleep 1
  done
  sinfo
  sinfo -h -o %T | grep -qx idle || { echo "the node did not come up; see $BASE/log" >&2; exit 1; }
}

check() {
  rm -f "$BASE"/out_*.txt
  local j
  j=$(sbatch --parsable --array=0-3 --chdir="$BASE" -o "$BASE/slurm-%A_%a.out" \
      --wrap "echo task \$SLURM_ARRAY_TASK_ID > $BASE/out_\$SLURM_ARRAY_TASK_ID.txt")
  echo "array job $j"
  for _ in $(seq 1 120); do squeue -h -j "$j" 2>/dev/null | grep -q . || break; sleep 0.5; done
  [ "$(ls "$BASE"/out_*.txt | wc -l)" -eq 4 ] && echo "all 4 tasks ran"
}

stop() {
  alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }
  local pids mpid
  pids=$(cat "$BASE/slurmd.pid" "$BASE/slurmctld.pid" 2>/dev/null || true)
  mpid=$(cat /run/munge/munged.pid 2>/dev/null || true)
  scontrol shutdown 2>/dev/null || true
  for pid in $pids; do
    for _ in $(seq 1 20); do alive "$pid" || break; sleep 0.5; done
    if alive "$pid"; then kill "$pid"; fi
  done
  if [ -n "$mpid" ] && alive "$mpid"; then kill "$mpid"; fi
}

case "${1:-}" in
  setup) setup ;;
  check) check ;;
  stop) stop ;;
  *) echo "usage: $0 setup|check|stop" >&2; exit 2 ;;
esac
