# shellcheck shell=bash
# daemons.sh — starting, checking and stopping the daemons of one cluster:
# munged, MariaDB and slurmdbd (accounting mode), slurmctld, one slurmd per
# node and slurmrestd. Every started daemon goes into the manifest
# ($D/run/daemons); nothing else is ever signalled.
#
# Sourced by scripts/slurm-cluster.

DAEMON_PATH=/usr/sbin:/usr/bin:/sbin:/bin

# CX CMD...: a Slurm command against this cluster, on the host or in the
# rootfs, in a clean environment (a caller's SLURM_JWT would otherwise make
# the CLI authenticate as that token's user). Lock fds are not inherited:
# a daemon holding them would block every later start/stop.
CX() {
  if [ "$MODE" = chroot ]; then
    chroot "$ROOTFS" env -i PATH=$DAEMON_PATH LANG=C.UTF-8 HOME=/root SLURM_CONF="$D/etc/slurm.conf" "$@" 8>&- 9>&-
  else
    env -i PATH=$DAEMON_PATH LANG=C.UTF-8 HOME=/root SLURM_CONF="$D/etc/slurm.conf" "$@" 8>&- 9>&-
  fi
}
CXT() { CX timeout 20 "$@"; }

dump_logs() {
  local f
  for f in "$D"/log/*; do
    [ -s "$f" ] || continue
    log "---- tail $f"
    tail -n 12 "$f" >&2 || true
  done
}

# start_forking ROLE PIDFILE CMD...: a daemon that forks and writes its pid file
start_forking() {
  local role=$1 pidfile=$2
  shift 2
  rm -f "$pidfile"
  (cd / && CX "$@" </dev/null >>"$D/log/$role.stdout" 2>&1) || {
    dump_logs
    die "$role failed to start"
  }
  wait_for 20 "$role pid file" test -s "$pidfile" || {
    dump_logs
    die "$role did not write $pidfile"
  }
  local pid
  pid=$(cat "$pidfile")
  record "$role" "$pid" || {
    dump_logs
    die "$role (pid $pid) is not running"
  }
}

# start_foreground ROLE CMD...: a daemon that stays in the foreground; the
# wrapper writes its own PID and execs, so the PID is the daemon's
start_foreground() {
  local role=$1 want_exe=$2
  shift 2
  local pidfile=$D/run/$role.pid pid
  rm -f "$pidfile"
  (cd / && exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$D/log/$role.log" 2>&1 8>&- 9>&-) &
  wait_for 10 "$role pid file" test -s "$pidfile" || die "$role did not start"
  pid=$(cat "$pidfile")
  wait_for 10 "$role to exec" sh -c "[ \"\$(readlink /proc/$pid/exe)\" = '$want_exe' ]" || {
    dump_logs
    die "$role exited at once"
  }
  record "$role" "$pid"
}

# ---------------------------------------------------------------- munge ----
start_munged() {
  start_forking munged "$D/run/munged.pid" /usr/sbin/munged --force \
    --socket="$D/run/munge.socket" --key-file="$D/etc/munge.key" --pid-file="$D/run/munged.pid" \
    --log-file="$D/log/munged.log" --seed-file="$D/run/munged.seed" --num-threads=4
  wait_for 15 "munged" CX sh -c "munge -n -S '$D/run/munge.socket' | unmunge -S '$D/run/munge.socket'" || {
    dump_logs
    die "munged does not answer on $D/run/munge.socket"
  }
}

# ------------------------------------------------------------ accounting ---
# MariaDB always runs from the host's packages (slurmdbd in the rootfs
# reaches it over 127.0.0.1); its data dir is wiped with the rest of the
# state on a fresh start, so job ids and accounting records agree.
DB_SOCK() { echo "$DREAL/run/mariadb.sock"; }
db_sql() { mariadb --no-defaults -S "$(DB_SOCK)" -u root -e "$1"; }

start_mariadb() {
  rm -rf "$DREAL/db" "$DREAL/dbtmp"
  # a tmpdir of its own: two clusters installing at once collided in /tmp
  mkdir -p "$DREAL/db" "$DREAL/dbtmp"
  mariadb-install-db --no-defaults --user=root --datadir="$DREAL/db" --tmpdir="$DREAL/dbtmp" --skip-test-db \
    --auth-root-authentication-method=socket >>"$D/log/mariadb-install.log" 2>&1 || {
    dump_logs
    die "mariadb-install-db failed"
  }
  start_foreground mariadbd "$(readlink -f /usr/sbin/mariadbd)" \
    /usr/sbin/mariadbd --no-defaults --user=root --datadir="$DREAL/db" --tmpdir="$DREAL/dbtmp" --socket="$(DB_SOCK)" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$DREAL/run/mariadbd.pid.own" \
    --log-error="$DREAL/log/mariadbd.err" --innodb-buffer-pool-size=64M
  wait_for 60 "MariaDB" db_sql "SELECT 1" || {
    dump_logs
    die "MariaDB does not answer on $(DB_SOCK)"
  }
  db_sql "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "cannot create the MariaDB user slurm"
}

start_slurmdbd() {
  start_forking slurmdbd "$D/run/slurmdbd.pid" /usr/sbin/slurmdbd
  wait_for 60 "slurmdbd" CXT sacctmgr -n list cluster || {
    dump_logs
    die "slurmdbd does not answer"
  }
}

# the cluster, accounts research and ops, QoS normal and high, and the users
# root and sps-test associated with both accounts and both QoS
setup_accounting() {
  local u
  CXT sacctmgr -i add cluster "$CLUSTER_NAME" >>"$D/log/sacctmgr.log" 2>&1 || die "sacctmgr add cluster failed"
  CXT sacctmgr -i add qos high >>"$D/log/sacctmgr.log" 2>&1 || die "sacctmgr add qos failed"
  CXT sacctmgr -i add account research,ops Cluster="$CLUSTER_NAME" Organization=sps \
    Description=test >>"$D/log/sacctmgr.log" 2>&1 || die "sacctmgr add account failed"
  local users=(root "$TEST_USER")
  case $TOKEN_USER in root | "$TEST_USER") ;; *) users+=("$TOKEN_USER") ;; esac
  for u in "${users[@]}"; do
    CXT sacctmgr -i add user "$u" Account=research,ops DefaultAccount=research >>"$D/log/sacctmgr.log" 2>&1 ||
      die "sacctmgr add user $u failed"
  done
  CXT sacctmgr -i modify user where name="$(IFS=,; echo "${users[*]}")" set qos=normal,high \
    defaultqos=normal >>"$D/log/sacctmgr.log" 2>&1 || die "sacctmgr modify user failed"
}

# ---------------------------------------------------------------- slurm ----
start_slurmctld() {
  start_forking slurmctld "$D/run/slurmctld.pid" /usr/sbin/slurmctld -f "$D/etc/slurm.conf"
  wait_for "$READY_TIMEOUT" "slurmctld" CXT scontrol ping || {
    dump_logs
    die "slurmctld does not answer"
  }
}

nodes_ready() {
  local out n=0 st
  out=$(CXT sinfo -h -N -o '%N %t' | sort -u) || return 1
  while read -r _ st; do
    case $st in idle | mix | alloc) n=$((n + 1)) ;; *) return 1 ;; esac
  done <<<"$out"
  [ "$n" -eq "$NNODES" ]
}

start_slurmds() {
  local i n
  for ((i = 0; i < NNODES; i++)); do
    n=${NODE_PREFIX}$i
    mkdir -p "$D/spool/$n"
    start_forking "slurmd-$n" "$D/run/slurmd-$n.pid" /usr/sbin/slurmd -f "$D/etc/slurm.conf" -N "$n"
  done
  wait_for "$READY_TIMEOUT" "all $NNODES nodes to be idle" nodes_ready || {
    CXT sinfo -N >&2 || true
    dump_logs
    die "nodes did not come up"
  }
}

rest_plugins() {
  if [ "$VERSION" = 22.05 ]; then
    echo "openapi/v0.0.36,openapi/v0.0.37,openapi/v0.0.38$([ "$ACCOUNTING" = 0 ] || echo ,openapi/dbv0.0.38)"
  else
    echo "openapi/slurmctld$([ "$ACCOUNTING" = 0 ] || echo ,openapi/slurmdbd)"
  fi
}

# slurmrestd refuses to run as root or SlurmUser: it runs as slurmrest.
# SLURM_JWT=daemon makes it pass each client's token on to slurmctld. Its
# working directory is the default one of REST jobs that name none.
start_slurmrestd() {
  local -a pfx=()
  [ "$MODE" = host ] || pfx=(chroot "$ROOTFS")
  start_foreground slurmrestd "$EXE_ROOT/usr/sbin/slurmrestd" \
    "${pfx[@]}" setpriv --reuid="$REST_USER" --regid="$REST_USER" --init-groups \
    env -i PATH=$DAEMON_PATH LANG=C.UTF-8 SLURM_JWT=daemon SLURM_CONF="$D/etc/slurm.conf" \
    sh -c 'cd "$0" && exec "$@"' "$D/work" \
    /usr/sbin/slurmrestd -f "$D/etc/slurm.conf" -a rest_auth/jwt -s "$(rest_plugins)" "127.0.0.1:$REST_PORT"
}

mint_token() { # mint_token USER LIFESPAN -> token on stdout
  local out
  out=$(CXT scontrol token username="$1" lifespan="$2") || return 1
  out=${out#SLURM_JWT=}
  [[ $out == ey* ]] || return 1
  echo "$out"
}

rest_ping() { # rest_ping TOKEN
  local out
  out=$(curl -sS --fail --max-time 10 -H "X-SLURM-USER-NAME: $TOKEN_USER" \
    -H "X-SLURM-USER-TOKEN: $1" "http://127.0.0.1:$REST_PORT/slurm/$API_VERSION/ping") || return 1
  # 24.11 answers a bad token with 200 and "pinged": "DOWN"
  [ "$VERSION" = 22.05 ] || grep -Eq '"pinged"[[:space:]]*:[[:space:]]*"UP"' <<<"$out"
}

wait_rest() {
  local token
  token=$(mint_token "$TOKEN_USER" 600) || die "scontrol token failed"
  wait_for "$READY_TIMEOUT" "slurmrestd on 127.0.0.1:$REST_PORT" rest_ping "$token" || {
    dump_logs
    die "slurmrestd does not answer"
  }
}

# --------------------------------------------------------------- stopping --
# slurmstepd processes of this cluster: the flavour's slurmstepd binary with
# its cwd or an open file in this state dir (its slurmd log). They outlive
# slurmd, so stop looks for them when slurmctld could not cancel the jobs.
our_stepds() {
  local p exe f want
  want=$(readlink -f "$EXE_ROOT/usr/sbin/slurmstepd")
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [ "$exe" = "$want" ] || continue
    case "$(readlink "$p/cwd" 2>/dev/null)/" in "$DREAL"/*)
      echo "${p#/proc/}"
      continue
      ;;
    esac
    for f in "$p"/fd/*; do
      case "$(readlink "$f" 2>/dev/null)" in "$DREAL"/*)
        echo "${p#/proc/}"
        break
        ;;
      esac
    done
  done
}

# descendants PID: deepest first, read from /proc (procps may be missing)
descendants() {
  # "pid ppid" of every process; the name in field 2 may hold spaces, so
  # the parent is the second field after its closing ")"
  awk '{ i = match($0, /\) [A-Za-z] [0-9]+/); if (i) { split(substr($0, i + 4), f, " "); print $1, f[1] } }' \
    /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
      { kids[$2] = kids[$2] " " $1 }
      function walk(p,   n, a, i) { n = split(kids[p], a, " "); for (i = 1; i <= n; i++) { walk(a[i]); print a[i] } }
      END { walk(root) }'
}

cancel_all_jobs() {
  role_alive slurmctld || return 0
  local jobs left end
  jobs=$(CXT squeue -h -o '%A' 2>/dev/null || true)
  [ -n "$jobs" ] || return 0
  log "cancelling $(wc -w <<<"$jobs") job(s)"
  # newest first: a pending job handed the CPUs of a cancelled one while it
  # is being cancelled itself would linger in COMPLETING for KillWait
  # shellcheck disable=SC2046
  CX timeout 60 scancel $(tr ' ' '\n' <<<"$jobs" | sort -rn) 2>/dev/null || true
  end=$((SECONDS + KILL_WAIT + 20))
  while [ "$SECONDS" -lt "$end" ]; do
    left=$(CXT squeue -h -t PD,R,CG,S,CF -o '%A' 2>/dev/null | wc -l || echo 1)
    [ "$left" = 0 ] && [ -z "$(our_stepds)" ] && return 0
    sleep 0.3
  done
  log "jobs still not gone after $((KILL_WAIT + 20))s"
}

stop_all() {
  [ -s "$MANIFEST" ] || {
    log "nothing recorded in $MANIFEST: nothing to stop"
    return 0
  }
  cancel_all_jobs
  stop_role slurmrestd 10
  local r s c
  local -a stoppers=()
  for r in $(manifest_roles); do
    case $r in slurmd-*)
      stop_role "$r" 20 &
      stoppers+=($!)
      ;;
    esac
  done
  # only these: a bare `wait` would also wait for mariadbd and slurmrestd,
  # which this shell may have started in the background
  [ ${#stoppers[@]} -eq 0 ] || wait "${stoppers[@]}"
  stop_role slurmctld 30
  for s in $(our_stepds); do
    log "killing leftover slurmstepd $s and its job processes"
    for c in $(descendants "$s"); do kill -KILL "$c" 2>/dev/null || true; done
    kill -KILL "$s" 2>/dev/null || true
  done
  stop_role slurmdbd 30
  stop_role mariadbd 60
  stop_role munged 10
  : >"$MANIFEST"
  rm -f "$D/env" "$D"/run/*.pid
  [ "$MODE" = host ] || release_mounts
  log "cluster in $D stopped"
}
