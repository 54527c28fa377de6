#!/usr/bin/env bash
# Starts a local 3-member Flotilla cluster in the foreground, like etcd's
# Procfile: clients on 127.0.0.1:2379, :22379, :32379; peers on :2380, :22380,
# :32380; data dirs under ./cluster.flotilla/. Ctrl-C stops all three (each
# by its PID). The flags are etcd's: the same lines start an etcd cluster
# with `etcd` in place of `flotilla serve`.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${FLOTILLA_BIN:-$top/build/src/cmd/flotilla}"
dir="${CLUSTER_DIR:-$PWD/cluster.flotilla}"
token="${CLUSTER_TOKEN:-flotilla-local-cluster}"
names=(infra1 infra2 infra3)
client_ports=(2379 22379 32379)
peer_ports=(2380 22380 32380)

initial=""
for i in 0 1 2; do
    initial+="${initial:+,}${names[$i]}=http://127.0.0.1:${peer_ports[$i]}"
done

pids=()
stop_all() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all INT TERM EXIT

mkdir -p "$dir"
for i in 0 1 2; do
    name=${names[$i]}
    client="http://127.0.0.1:${client_ports[$i]}"
    peer="http://127.0.0.1:${peer_ports[$i]}"
    "$bin" serve --name "$name" --data-dir "$dir/$name" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$initial" --initial-cluster-token "$token" \
        --initial-cluster-state new > >(sed -u "s/^/$name | /") 2>&1 &
    pids+=($!)
done
echo "cluster: 3 members; endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 (Ctrl-C stops)" >&2
wait
