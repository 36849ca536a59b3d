# Sourced by scripts/test.sh. Starts a throwaway Redis (Debian's redis-server) on 127.0.0.1 for the
# gateway's cluster-wide rate-limit tests (gateway-core/tests/ratelimit.rs), with no persistence.
# Exports PALISADE_REDIS_URL. Installs redis-server with apt-get when missing.

palisade_gateway_redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "gateway-redis: installing redis-server from Debian" >&2
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null) \
      || { echo "gateway-redis: apt-get install redis-server failed" >&2; return 1; }
  fi
  local port
  for port in 26379 26479 26579 26679; do
    if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then break; fi
    port=""
  done
  [ -n "$port" ] || { echo "gateway-redis: no free port among 26379 26479 26579 26679" >&2; return 1; }
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no \
    --protected-mode yes >/dev/null 2>&1 &
  local pid=$!
  echo "$pid" >>"$PALISADE_PIDS_FILE"
  local i
  for i in $(seq 1 50); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then
      export PALISADE_REDIS_URL="redis://127.0.0.1:$port"
      echo "gateway-redis: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$port (pid $pid)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "gateway-redis: redis-server did not come up on 127.0.0.1:$port" >&2
  return 1
}
palisade_gateway_redis
