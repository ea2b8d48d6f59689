#!/usr/bin/env bash
# A real two-node Docker Swarm on this machine, for tests/swarm.rs, made and removed whole.
#
#   cluster.sh up   NAME INDEX DIR   make it; prints KEY=VALUE lines (sockets, addresses)
#   cluster.sh down NAME INDEX DIR   remove all of it (idempotent; also after a failed up)
#   cluster.sh stop-worker NAME INDEX DIR   stop the worker's engine (a node that goes away)
#
# NAME (at most 6 of [a-z0-9]) names the network namespaces and links; INDEX (1-200) picks the
# addresses 10.213.INDEX.0/24 (between the nodes) and 10.212.INDEX.0/30 (host to the manager),
# so two clusters can exist at once. DIR holds everything on disk (data roots, sockets, logs).
#
# The host's own engine is never made a swarm node (`docker swarm init` there would change the
# networking of every other test on it). Instead two more dockerd run, each in a network
# namespace of its own (a veth pair between them, one more to the host so that the test can reach
# the gateway), started with `nsenter --net=` (`ip netns exec` remounts /sys, and the engine then
# finds no cgroups), each with its own data root, exec root, pidfile, unix socket and config file
# (the host's /etc/docker/daemon.json would conflict with those flags). The manager inits the
# swarm, the worker joins it. A registry (Debian's docker-registry) runs in the manager's
# namespace; both engines trust it as an insecure registry. busybox and caddy:2 come from the host
# engine by `docker save` (no registry outside can be reached).
set -euo pipefail

cmd="$1" name="$2" index="$3" dir="$4"
[[ "$name" =~ ^[a-z0-9]{1,6}$ ]] || { echo "bad NAME $name" >&2; exit 2; }
[[ "$index" =~ ^[0-9]+$ ]] && (( index >= 1 && index <= 200 )) || { echo "bad INDEX $index" >&2; exit 2; }

ns_m="pvdsw-$name-m" ns_w="pvdsw-$name-w"
if_h="pvs$name" # host end of the host<->manager pair (<= 15 characters)
mgr_ip="10.213.$index.1" wrk_ip="10.213.$index.2"
host_ip="10.212.$index.1" mgr_host_ip="10.212.$index.2"
registry="$mgr_ip:5000"
pool="10.214.$index.0/24"

log() { echo "cluster.sh: $*" >&2; }

stop_pid() { # stop a process by the pid in a file, waiting for it to go
  local file="$1" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  for node in w m; do
    local sock="$dir/$node/docker.sock"
    if [ -S "$sock" ]; then
      # Containers first: a dockerd stopped with running containers leaves their shims behind.
      local ids
      ids="$(docker -H "unix://$sock" ps -aq 2>/dev/null || true)"
      [ -z "$ids" ] || docker -H "unix://$sock" rm -f $ids >/dev/null 2>&1 || true
    fi
    stop_pid "$dir/$node/dockerd.pid"
  done
  stop_pid "$dir/registry.pid"
  # Whatever the engines mounted under their roots (fuse-overlayfs, netns files, shm).
  for node in w m; do
    { grep -o " $dir/$node/[^ ]*" /proc/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || fusermount -uz "$m" 2>/dev/null || true
    done
  done
  ip netns del "$ns_w" 2>/dev/null || true
  ip netns del "$ns_m" 2>/dev/null || true
  ip link del "$if_h" 2>/dev/null || true
  rm -rf "$dir"
}

wait_sock() { # wait for an engine to answer
  local sock="$1" logf="$2"
  for _ in $(seq 300); do
    docker -H "unix://$sock" version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "engine at $sock did not answer in 60 s; its log:"; tail -n 30 "$logf" >&2; return 1
}

start_engine() { # node ns
  local node="$1" ns="$2" d="$dir/$1"
  mkdir -p "$d/data" "$d/exec"
  cat >"$d/daemon.json" <<JSON
{"storage-driver": "fuse-overlayfs", "insecure-registries": ["$registry"], "mtu": 1400,
 "log-driver": "json-file", "bip": "172.31.$index.1/24", "default-address-pools": [{"base": "10.215.$index.0/24", "size": 28}]}
JSON
  nsenter --net="/run/netns/$ns" dockerd --config-file "$d/daemon.json" --data-root "$d/data" \
    --exec-root "$d/exec" --pidfile "$d/dockerd.pid" -H "unix://$d/docker.sock" \
    >"$d/dockerd.log" 2>&1 </dev/null &
  wait_sock "$d/docker.sock" "$d/dockerd.log"
}

up() {
  down
  mkdir -p "$dir"
  local t0=$SECONDS
  ip netns add "$ns_m"
  ip netns add "$ns_w"
  ip link add "pvdswm$name" type veth peer name "pvdsww$name"
  ip link set "pvdswm$name" netns "$ns_m"
  ip link set "pvdsww$name" netns "$ns_w"
  ip link add "$if_h" type veth peer name "pvdswh$name"
  ip link set "pvdswh$name" netns "$ns_m"
  ip addr add "$host_ip/30" dev "$if_h"
  ip link set "$if_h" up
  ip -n "$ns_m" addr add "$mgr_ip/24" dev "pvdswm$name"
  ip -n "$ns_m" addr add "$mgr_host_ip/30" dev "pvdswh$name"
  ip -n "$ns_w" addr add "$wrk_ip/24" dev "pvdsww$name"
  for l in lo "pvdswm$name" "pvdswh$name"; do ip -n "$ns_m" link set "$l" up; done
  for l in lo "pvdsww$name"; do ip -n "$ns_w" link set "$l" up; done
  # The engines' bridges need a default route to masquerade through; none leaves the namespaces.
  ip -n "$ns_m" route add default via "$host_ip"
  ip -n "$ns_w" route add default via "$mgr_ip"

  mkdir -p "$dir/registry"
  cat >"$dir/registry.yml" <<YML
version: 0.1
storage: {filesystem: {rootdirectory: $dir/registry}, delete: {enabled: true}}
http: {addr: "0.0.0.0:5000"}
log: {level: info}
YML
  nsenter --net="/run/netns/$ns_m" docker-registry serve "$dir/registry.yml" \
    >"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$dir/registry.pid"

  start_engine m "$ns_m" &
  local pm=$!
  start_engine w "$ns_w" &
  local pw=$!
  wait $pm; wait $pw
  local dm="docker -H unix://$dir/m/docker.sock" dw="docker -H unix://$dir/w/docker.sock"
  log "engines up after $((SECONDS - t0)) s"

  $dm swarm init --advertise-addr "$mgr_ip" --listen-addr "$mgr_ip:2377" \
    --default-addr-pool "$pool" --default-addr-pool-mask-length 28 >/dev/null
  local token
  token="$($dm swarm join-token -q worker)"
  $dw swarm join --advertise-addr "$wrk_ip" --listen-addr "$wrk_ip:2377" --token "$token" "$mgr_ip:2377" >/dev/null
  log "swarm formed after $((SECONDS - t0)) s"

  # Seed images without any registry outside.
  local images="${SWARM_SEED_IMAGES:-busybox:latest caddy:2}"
  # shellcheck disable=SC2086
  docker save $images >"$dir/seed.tar"
  $dm load -i "$dir/seed.tar" >/dev/null
  $dw load -i "$dir/seed.tar" >/dev/null
  rm -f "$dir/seed.tar"
  log "images seeded after $((SECONDS - t0)) s"

  for _ in $(seq 100); do
    curl -fsS "http://$registry/v2/" --interface "$if_h" >/dev/null 2>&1 && break
    nsenter --net="/run/netns/$ns_m" curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
    sleep 0.2
  done

  echo "MANAGER_SOCK=$dir/m/docker.sock"
  echo "WORKER_SOCK=$dir/w/docker.sock"
  echo "MANAGER_IP=$mgr_ip"
  echo "WORKER_IP=$wrk_ip"
  echo "MANAGER_HOST_IP=$mgr_host_ip"
  echo "REGISTRY=$registry"
  echo "MANAGER_NETNS=$ns_m"
  echo "WORKER_NETNS=$ns_w"
  echo "MANAGER_NODE=$($dm info --format '{{.Swarm.NodeID}}')"
  echo "WORKER_NODE=$($dw info --format '{{.Swarm.NodeID}}')"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  stop-worker) stop_pid "$dir/w/dockerd.pid" ;;
  *) echo "usage: $0 up|down|stop-worker NAME INDEX DIR" >&2; exit 2 ;;
esac
