# shellcheck shell=bash
# packages.sh — everything a cluster needs installed: Debian packages on the
# host, the debootstrapped trixie root for Slurm 24.11 on a Debian 12 host
# (shared by all 24.11 clusters of that host), its mounts, and the users
# (slurmrest for slurmrestd, sps-test with UID/GID 7001 for tests).
#
# Sourced by scripts/slurm-cluster. Uses MODE (host|chroot), ROOTFS, ACCOUNTING.

SLURM_PKGS=(slurmctld slurmd slurmrestd slurm-client slurm-wlm-basic-plugins slurm-wlm-jwt-plugin munge)
TEST_USER=sps-test
TEST_UID=7001
REST_USER=slurmrest

# apt-get on the host is shared with other users of the machine: wait for
# their dpkg lock instead of failing
apt_quiet() {
  DEBIAN_FRONTEND=noninteractive "$@" -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold >&2
}

missing_pkgs() { # missing_pkgs ROOT PKG... (ROOT empty for the host)
  local root=$1 p st
  shift
  for p in "$@"; do
    if [ -n "$root" ]; then
      st=$(chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    else
      st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    fi
    [ "$st" = "install ok installed" ] || echo "$p"
  done
}

# install_pkgs ROOT PKG...: installs the missing ones, with `apt-get update`
# only when the first try fails (stale or absent package lists)
install_pkgs() {
  local root=$1
  shift
  local missing
  mapfile -t missing < <(missing_pkgs "$root" "$@")
  [ ${#missing[@]} -gt 0 ] || return 0
  log "installing Debian packages${root:+ in $root}: ${missing[*]}"
  local t0=$SECONDS policy=${root}/usr/sbin/policy-rc.d made_policy=
  # package scripts must not start system-wide munge/slurm/mariadb services
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local -a run=()
  [ -z "$root" ] || run=(chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root DEBIAN_FRONTEND=noninteractive)
  local ok=1
  if ! apt_quiet "${run[@]}" apt-get install "${missing[@]}"; then
    log "apt-get install failed; running apt-get update and trying again"
    if ! apt_quiet "${run[@]}" apt-get update || ! apt_quiet "${run[@]}" apt-get install "${missing[@]}"; then
      ok=
    fi
  fi
  [ -z "$made_policy" ] || rm -f "$policy"
  [ -n "$ok" ] || die "could not install ${missing[*]}${root:+ in $root} from Debian's packages (see apt-get's messages above; is a Debian mirror reachable?)"
  [ -z "$root" ] || "${run[@]}" apt-get clean >&2 || true
  log "packages installed in $((SECONDS - t0))s"
}

# ------------------------------------------------------------ the rootfs ---
mirror_url() {
  local u=
  if [ -n "${SPS_SLURM_MIRROR:-}" ]; then
    echo "$SPS_SLURM_MIRROR"
    return
  fi
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    u=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$u" ] && [ -r /etc/apt/sources.list ]; then
    u=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\/.*\/debian\/?$/) { print $i; exit } }' \
      /etc/apt/sources.list)
  fi
  echo "${u:-http://deb.debian.org/debian}"
}

# The rootfs is shared by every 24.11 cluster: one lock (fd 8) serialises
# creating it, installing into it, and mounting or unmounting its /proc,
# /sys and /dev against clusters starting or stopping. Held once per process.
lock_rootfs() {
  [ -z "${ROOTFS_LOCKED:-}" ] || return 0
  mkdir -p "$(dirname "$ROOTFS")"
  exec 8>"$ROOTFS.lock"
  flock -w 900 8 || die "another slurm-cluster holds $ROOTFS.lock for 15 minutes"
  ROOTFS_LOCKED=1
}

unlock_rootfs() {
  [ -n "${ROOTFS_LOCKED:-}" ] || return 0
  exec 8>&-
  ROOTFS_LOCKED=
}

# A marker says the rootfs is complete. Returns with the lock held: the
# caller releases it once its daemons run (see release_mounts).
ensure_rootfs() {
  local marker=$ROOTFS/.sps-rootfs-ok
  lock_rootfs

  if [ ! -f "$marker" ]; then
    if [ -e "$ROOTFS" ] && [ -n "$(ls -A "$ROOTFS" 2>/dev/null)" ]; then
      # only ever remove a half-done debootstrap of ours
      [ -d "$ROOTFS/debootstrap" ] || [ -f "$ROOTFS/.sps-rootfs-started" ] ||
        die "$ROOTFS is not empty and not a rootfs of this script: remove it or set --rootfs"
      awk -v r="$ROOTFS/" 'index($2, r) == 1 { f = 1 } END { exit !f }' /proc/self/mounts &&
        die "$ROOTFS is half made and has mounts below it: unmount them first"
      log "removing the half-done root filesystem in $ROOTFS"
      rm -rf --one-file-system "$ROOTFS"
    fi
    install_pkgs "" debootstrap
    [ -f /usr/share/debootstrap/scripts/trixie ] || die "this debootstrap knows no 'trixie'"
    local mirror t0=$SECONDS
    mirror=$(mirror_url)
    mkdir -p "$ROOTFS"
    touch "$ROOTFS/.sps-rootfs-started"
    log "debootstrap --variant=minbase trixie $ROOTFS $mirror (about a minute)"
    debootstrap --variant=minbase trixie "$ROOTFS" "$mirror" >&2 ||
      die "debootstrap failed (see $ROOTFS/debootstrap/debootstrap.log)"
    log "debootstrap done in $((SECONDS - t0))s"
  fi

  # machines like this one may turn off apt's Release date checks; the
  # chroot's apt must agree with the host's
  local dates
  dates=$(apt-config dump 2>/dev/null | grep -E '^Acquire::(Check-Valid-Until|Check-Date) "(false|0)";$' || true)
  if [ -n "$dates" ]; then
    printf '%s\n' "$dates" >"$ROOTFS/etc/apt/apt.conf.d/99sps-host-dates"
  else
    rm -f "$ROOTFS/etc/apt/apt.conf.d/99sps-host-dates"
  fi

  ensure_mounts
  local pkgs=("${SLURM_PKGS[@]}")
  [ "$ACCOUNTING" = 0 ] || pkgs+=(slurmdbd)
  install_pkgs "$ROOTFS" "${pkgs[@]}"
  touch "$marker"

  # node and controller names resolve through /etc/hosts
  local host
  host=$(hostname -s 2>/dev/null || hostname)
  if ! grep -qE "^127\.0\.0\.1[[:space:]].*[[:space:]]$host([[:space:]]|\$)" "$ROOTFS/etc/hosts" 2>/dev/null; then
    printf '127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$host" >"$ROOTFS/etc/hosts"
  fi
}

# /proc, /sys, /dev, /dev/pts inside the rootfs, each only if not mounted
# yet; what this script mounted is listed for the last stop to unmount
ensure_mounts() {
  local list=$ROOTFS/.sps-mounts
  _mount_once() {
    local tgt=$ROOTFS/$1
    shift
    mkdir -p "$tgt"
    mountpoint -q "$tgt" && return 0
    mount "$@" "$tgt" || die "cannot mount $tgt"
    grep -qxF "$tgt" "$list" 2>/dev/null || echo "$tgt" >>"$list"
  }
  _mount_once proc -t proc -o nosuid,nodev,noexec proc
  _mount_once sys -t sysfs -o ro,nosuid,nodev,noexec sysfs
  _mount_once dev --bind /dev
  _mount_once dev/pts --bind /dev/pts
}

# unmount (deepest first) what ensure_mounts mounted, when no cluster of
# this rootfs runs any more
release_mounts() {
  local list=$ROOTFS/.sps-mounts d
  [ -s "$list" ] || return 0
  # A cluster starting meanwhile holds the lock until its daemons run: then
  # its mounts stay. Only a short wait: a start of this very cluster may hold
  # the rootfs lock while it waits for our cluster lock.
  if [ -z "${ROOTFS_LOCKED:-}" ]; then
    exec 8>"$ROOTFS.lock"
    if ! flock -w 5 8; then
      exec 8>&-
      log "$ROOTFS is busy (a cluster is starting): its mounts stay"
      return 0
    fi
    ROOTFS_LOCKED=1
  fi
  for d in "$ROOTFS"/.sps-clusters/*; do
    [ -L "$d" ] || continue
    [ "$(readlink -f "$d")" != "$DREAL" ] || continue
    if any_alive "$(readlink -f "$d")/run/daemons"; then
      log "other clusters still use $ROOTFS: its mounts stay"
      return 0
    fi
  done
  local m
  for m in $(tac "$list"); do
    mountpoint -q "$m" && { umount "$m" || umount -l "$m" || log "could not unmount $m"; }
  done
  rm -f "$list"
}

# ---------------------------------------------------------------- users ----
# in_root CMD...: a command on the host or in the rootfs, clean environment
in_root() {
  if [ "$MODE" = chroot ]; then
    chroot "$ROOTFS" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root "$@"
  else
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root "$@"
  fi
}

ensure_users() {
  if ! in_root getent passwd "$REST_USER" >/dev/null; then
    log "creating system user $REST_USER (slurmrestd refuses to run as root)"
    in_root useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$REST_USER" >&2
  fi
  local have
  have=$(in_root getent passwd "$TEST_USER" | cut -d: -f3,4 || true)
  if [ -z "$have" ]; then
    in_root getent group "$TEST_UID" >/dev/null && [ "$(in_root getent group "$TEST_UID" | cut -d: -f1)" != "$TEST_USER" ] &&
      die "GID $TEST_UID is taken by another group: cannot create $TEST_USER"
    in_root getent passwd "$TEST_UID" >/dev/null && die "UID $TEST_UID is taken: cannot create $TEST_USER"
    log "creating test user $TEST_USER ($TEST_UID:$TEST_UID)"
    in_root getent group "$TEST_USER" >/dev/null || in_root groupadd -g "$TEST_UID" "$TEST_USER" >&2
    in_root useradd -u "$TEST_UID" -g "$TEST_UID" -M -d /tmp -s /bin/sh "$TEST_USER" >&2
  elif [ "$have" != "$TEST_UID:$TEST_UID" ]; then
    die "user $TEST_USER exists with UID:GID $have instead of $TEST_UID:$TEST_UID"
  fi
  if [ "$TOKEN_USER" != root ] && ! in_root getent passwd "$TOKEN_USER" >/dev/null; then
    die "token user $TOKEN_USER does not exist${ROOTFS:+ in $ROOTFS}"
  fi
}
