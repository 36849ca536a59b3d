# Sourced by scripts/test.sh. Installs Debian's etcd-server if needed, starts a single etcd on
# 127.0.0.1 (unusual ports, data under target/), registers its PID and exports
# PALISADE_ETCD_ENDPOINT for the etcd discovery backend tests (registry-client/tests/etcd.rs).

registry_etcd_start() {
  if ! command -v etcd >/dev/null 2>&1; then
    echo "installing etcd-server from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; } \
      || { echo "registry-etcd: apt-get install etcd-server failed" >&2; return 1; }
  fi
  local port=23790
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; do
    port=$((port + 2))
  done
  local dir="$PWD/target/registry-etcd"
  rm -rf "$dir" && mkdir -p "$dir"
  etcd --name palisade-registry-test --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "palisade-registry-test=http://127.0.0.1:$((port + 1))" \
    --listen-metrics-urls "" >"$dir/etcd.log" 2>&1 &
  local pid=$!
  echo "$pid" >>"$PALISADE_PIDS_FILE"
  local i
  for i in $(seq 1 60); do
    if curl -sf "http://127.0.0.1:$port/health" | grep -q '"health":"true"'; then
      echo "etcd up at http://127.0.0.1:$port (pid $pid)"
      export PALISADE_ETCD_ENDPOINT="http://127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "registry-etcd: etcd exited; log:" >&2; tail -20 "$dir/etcd.log" >&2; return 1
    fi
    sleep 0.5
  done
  echo "registry-etcd: etcd did not become healthy within 30 s; log:" >&2
  tail -20 "$dir/etcd.log" >&2
  return 1
}

registry_etcd_start || { echo "registry-etcd: FAILED to start etcd" >&2; exit 1; }
