# shellcheck shell=bash
# common.sh — helpers shared by scripts/slurm-cluster: logging, waiting, ports,
# and the process manifest (which daemons a cluster started, recorded as
# "role pid starttime exe" so that stop never signals a recycled PID).
#
# Sourced, never run. Expects `set -euo pipefail` in the caller.

log() { printf '[slurm-cluster] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

isint() { [[ $1 =~ ^[0-9]+$ ]]; }

# wait_for SECONDS WHAT CMD...: polls CMD every 0.2 s until it succeeds
wait_for() {
  local limit=$1 what=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then
      log "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# a TCP connect succeeds: somebody listens there
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# who listens on a port, for error messages
port_owner() {
  ss -H -ltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\),pid=\([0-9]*\).*/\1 pid \2/p' | head -n 1
}

# ------------------------------------------------------------- manifest ----
proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }
proc_exe() { readlink "/proc/$1/exe" 2>/dev/null || true; }

# same PID, same start time, same executable: still the process we started
# (a zombie has no exe and so does not count)
is_ours() { [ -d "/proc/$1" ] && [ "$(proc_start "$1")" = "$2" ] && [ "$(proc_exe "$1")" = "$3" ]; }

record() { # record ROLE PID
  local exe
  exe=$(proc_exe "$2")
  [ -n "$exe" ] || return 1
  echo "$1 $2 $(proc_start "$2") $exe" >>"$MANIFEST"
}

unrecord() { # unrecord ROLE
  [ -f "$MANIFEST" ] || return 0
  local tmp=$MANIFEST.tmp
  awk -v r="$1" '$1 != r' "$MANIFEST" >"$tmp"
  mv -f "$tmp" "$MANIFEST"
}

role_alive() { # role_alive ROLE
  [ -s "$MANIFEST" ] || return 1
  local role pid st exe
  while read -r role pid st exe; do
    [ "$role" = "$1" ] || continue
    is_ours "$pid" "$st" "$exe" && return 0
  done <"$MANIFEST"
  return 1
}

role_pid() { # role_pid ROLE -> pid on stdout when alive
  local role pid st exe
  while read -r role pid st exe; do
    [ "$role" = "$1" ] || continue
    if is_ours "$pid" "$st" "$exe"; then
      echo "$pid"
      return 0
    fi
  done <"$MANIFEST"
  return 1
}

all_alive() { # every recorded daemon still runs
  [ -s "$MANIFEST" ] || return 1
  local role pid st exe
  while read -r role pid st exe; do
    is_ours "$pid" "$st" "$exe" || return 1
  done <"$MANIFEST"
}

any_alive() { # manifest path (default: this cluster's)
  local m=${1:-$MANIFEST}
  [ -s "$m" ] || return 1
  local role pid st exe
  while read -r role pid st exe; do
    is_ours "$pid" "$st" "$exe" && return 0
  done <"$m"
  return 1
}

# stop_role ROLE [SECONDS]: SIGTERM, then SIGKILL after SECONDS
stop_role() {
  local want=$1 limit=${2:-20} role pid st exe end
  [ -s "$MANIFEST" ] || return 0
  while read -r role pid st exe; do
    [ "$role" = "$want" ] || continue
    is_ours "$pid" "$st" "$exe" || continue
    kill -TERM "$pid" 2>/dev/null || true
    end=$((SECONDS + limit))
    while is_ours "$pid" "$st" "$exe"; do
      if [ "$SECONDS" -ge "$end" ]; then
        log "$role (pid $pid) ignored SIGTERM for ${limit}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.1
    done
    log "stopped $role (pid $pid)"
  done <"$MANIFEST"
}

manifest_roles() { [ -s "$MANIFEST" ] && awk '{print $1}' "$MANIFEST" || true; }

# ---------------------------------------------------------------- hosts ----
# node-0..N-1 as a Slurm hostlist expression for the range [first, last]
node_range() {
  if [ "$1" -gt "$2" ]; then
    echo ""
  elif [ "$1" = "$2" ]; then
    echo "${NODE_PREFIX}$1"
  else
    echo "${NODE_PREFIX}[$1-$2]"
  fi
}

node_list() { # comma-separated node-0,...,node-(N-1)
  local i out=
  for ((i = 0; i < NNODES; i++)); do out+=${out:+,}${NODE_PREFIX}$i; done
  echo "$out"
}
