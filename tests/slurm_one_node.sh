#!/bin/sh
# A one-node Slurm cluster on localhost for the tests, everything in one
# folder D (munge key and socket, slurm.conf, state, logs, pid files):
#   tests/slurm_one_node.sh start D    starts munged, slurmctld, slurmd; waits
#                                      (at most 60 s) for the node to be idle
#   tests/slurm_one_node.sh stop D     stops each daemon by its pid file
# Nothing outside D is touched; the client commands need SLURM_CONF=D/slurm.conf.
# Needs root (slurmd starts jobs as their user) and Debian's slurm-wlm and munge.
set -u
cmd=$1; D=$2

stop() {
    for name in slurmd slurmctld munged; do
        f="$D/$name.pid"
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        rm -f "$f"
    done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

host=$(hostname -s)
cpus=$(nproc)
# The daemons meet on 127.0.0.1 (NodeAddr, SlurmctldHost's address): the
# host's name need not resolve (a fresh install or container may lack it).
# ports of our own, unlikely to be taken (another cluster may run here)
port=$((20000 + ($$ % 5000) * 2))
mkdir -p "$D/state" "$D/spool" && chmod 755 "$D" || exit 1  # munged wants its socket folder searchable
head -c 1024 /dev/urandom > "$D/munge.key" && chmod 600 "$D/munge.key" || exit 1
munged --key-file="$D/munge.key" --socket="$D/munge.sock" --pid-file="$D/munged.pid" \
    --log-file="$D/munged.log" --seed-file="$D/munge.seed" || { echo "munged did not start" >&2; exit 1; }
cat > "$D/slurm.conf" <<CONF
ClusterName=sdmtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge.sock
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
SlurmctldPort=$port
SlurmdPort=$((port + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$D/slurm.conf"
slurmctld -f "$D/slurm.conf" || { echo "slurmctld did not start (see $D/slurmctld.log)" >&2; stop; exit 1; }
slurmd -f "$D/slurm.conf" || { echo "slurmd did not start (see $D/slurmd.log)" >&2; stop; exit 1; }
i=0
while [ $i -lt 120 ]; do
    state=$(sinfo -h -o %t 2>/dev/null)
    [ "$state" = idle ] && exit 0
    sleep 0.5; i=$((i + 1))
done
echo "the node is not idle after 60 s (state '$state'; see $D/*.log)" >&2
stop
exit 1
