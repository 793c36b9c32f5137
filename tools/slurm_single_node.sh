#!/bin/bash
# The tests' single-node SLURM (from the shared tools, accounting off by default): idempotent single-node SLURM (Debian 12, slurm-wlm 22.05) on this machine, for containers
# without systemd and without cgroup delegation.  Run as root.  Exits 0 once `sinfo` shows the
# node up (idle, or mixed/allocated when jobs already run), non-zero otherwise.
#   Usage: slurm_single_node.sh                      # install if needed, configure, start, wait
#          SLURM_CPUS=2 SLURM_MEM_MB=20000 slurm_single_node.sh
#          SLURM_ACCOUNTING=1 slurm_single_node.sh   # with slurmdbd/MariaDB (sacct); default without
# Logs: /var/log/slurm/{slurmctld,slurmd,slurmdbd,jobcomp}.log, /var/log/munge/munged.log
set -u
LOG=/var/log/slurm
ACCT=${SLURM_ACCOUNTING:-0}  # no slurmdbd/MariaDB by default: the tests need no sacct
export DEBIAN_FRONTEND=noninteractive

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() { if alive "$1"; then kill "$(cat "$1")"; for _ in $(seq 1 40); do alive "$1" || break; sleep 0.5; done; fi; }

PKGS="slurm-wlm munge"; [ "$ACCT" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
missing=0
for b in slurmctld slurmd munged; do command -v $b >/dev/null || missing=1; done
[ "$ACCT" = 1 ] && for b in slurmdbd mariadbd; do command -v $b >/dev/null || missing=1; done
if [ $missing = 1 ]; then
    apt-get install -y $PKGS >/tmp/slurm_apt.log 2>&1 || { echo "apt-get failed, see /tmp/slurm_apt.log"; exit 1; }
fi

HOST=$(hostname -s)
CPUS=${SLURM_CPUS:-$(nproc)}
# RealMemory a bit under what `free -m` reports (slurmd refuses to register a node with less).
TOTAL_MB=$(free -m | awk '/^Mem:/{print $2}')
MEM=${SLURM_MEM_MB:-$(( TOTAL_MB * 90 / 100 ))}
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd $LOG /run/slurm

# --- munge -------------------------------------------------------------------------------
mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
fi
chown -R munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 700 /etc/munge; chmod 600 /etc/munge/munge.key; chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force || { echo "munged failed to start"; exit 1; }
    sleep 1
fi
munge -n | unmunge >/dev/null || { echo "munge round trip fails"; exit 1; }

# --- accounting: MariaDB + slurmdbd (so that sacct works as on a real cluster) -------------
if [ "$ACCT" = 1 ]; then
    mkdir -p /run/mysqld; chown mysql:root /run/mysqld
    if ! mysqladmin ping >/dev/null 2>&1; then
        setsid /usr/bin/mysqld_safe >/dev/null 2>&1 </dev/null &
        for _ in $(seq 1 30); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
        mysqladmin ping >/dev/null 2>&1 || { echo "MariaDB did not start (see /var/lib/mysql/*.err, syslog)"; exit 1; }
    fi
    mysql -u root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || { echo "MariaDB: cannot create the slurm database"; exit 1; }
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbpass
StorageLoc=slurm_acct_db
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
    if ! alive /run/slurm/slurmdbd.pid; then
        /usr/sbin/slurmdbd || { echo "slurmdbd failed; tail $LOG/slurmdbd.log:"; tail -20 $LOG/slurmdbd.log; exit 1; }
        for _ in $(seq 1 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
    fi
    ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
    ACCT_LINES="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

# --- slurm.conf --------------------------------------------------------------------------
CONF=/etc/slurm/slurm.conf
NEW=$(mktemp)
cat >"$NEW" <<EOF
# written by slurm_single_node.sh
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# no cgroups in this container: processes tracked through /proc; CPU binding by sched_setaffinity
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
$ACCT_LINES
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# finished jobs stay visible to scontrol for an hour
MinJobAge=3600
MaxArraySize=10001
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldTimeout=120
SlurmdTimeout=300
InactiveLimit=0
KillWait=30
Waittime=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
CHANGED=0
if ! cmp -s "$NEW" "$CONF"; then cp "$NEW" "$CONF"; CHANGED=1; fi
rm -f "$NEW"; chmod 644 "$CONF"

# --- daemons -----------------------------------------------------------------------------
if [ $CHANGED = 1 ]; then  # plugin changes need restarts; queued/running jobs survive (StateSaveLocation)
    stop /run/slurm/slurmctld.pid; stop /run/slurm/slurmd.pid
fi
if ! alive /run/slurm/slurmctld.pid; then
    /usr/sbin/slurmctld -f "$CONF" || { echo "slurmctld failed; tail $LOG/slurmctld.log:"; tail -20 $LOG/slurmctld.log; exit 1; }
fi
if ! alive /run/slurm/slurmd.pid; then
    /usr/sbin/slurmd -f "$CONF" || { echo "slurmd failed; tail $LOG/slurmd.log:"; tail -20 $LOG/slurmd.log; exit 1; }
fi

# slurmctld registers the cluster with slurmdbd itself; this only covers a failed registration
if [ "$ACCT" = 1 ]; then
    sleep 1; sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx local || sacctmgr -i add cluster local >/dev/null 2>&1
fi
STATE=""
for _ in $(seq 1 30); do
    STATE=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1)
    case "$STATE" in
        idle|mixed|allocated|completing)
            echo "slurm up: node $HOST $STATE; pids: slurmctld $(cat /run/slurm/slurmctld.pid)," \
                 "slurmd $(cat /run/slurm/slurmd.pid), munged $(cat /run/munge/munged.pid 2>/dev/null)" \
                 "$( [ "$ACCT" = 1 ] && echo ", slurmdbd $(cat /run/slurm/slurmdbd.pid), mariadbd $(cat /run/mysqld/mysqld.pid 2>/dev/null)")"
            exit 0;;
        down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1;;
    esac
    sleep 1
done
echo "node $HOST not up after 30 s (state: ${STATE:-none})"; sinfo; tail -20 $LOG/slurmctld.log; tail -20 $LOG/slurmd.log
exit 1
