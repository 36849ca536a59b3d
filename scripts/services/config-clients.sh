# Sourced by scripts/test.sh. Installs the third-party Spring Cloud Config clients the interop
# tests drive against our config server: config-client 1.5.0 (PyPI) and cloud-config-client 1.6.2
# (npm). No server to start: the tests start our server in-process on 127.0.0.1.
# Exports PALISADE_PY_CONFIG_CLIENT (a PYTHONPATH dir) and PALISADE_NODE_CONFIG_CLIENT (a dir
# with node_modules). Idempotent: a second run only checks the installed versions.

palisade_config_clients() {
  local base="${PALISADE_CACHE_DIR:-$HOME/.cache/palisade}/config-clients"
  local py="$base/py-config-client-1.5.0" node="$base/node-cloud-config-client-1.6.2"
  command -v python3 >/dev/null || { echo "config-clients: python3 is missing" >&2; return 1; }
  command -v node >/dev/null && command -v npm >/dev/null || {
    echo "config-clients: node/npm are missing" >&2; return 1; }
  if ! PYTHONPATH="$py" python3 -c 'import config' 2>/dev/null; then
    rm -rf "$py" && mkdir -p "$py"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$py" 'config-client==1.5.0' \
      || { echo "config-clients: pip install config-client==1.5.0 failed" >&2; return 1; }
  fi
  if [ ! -f "$node/node_modules/cloud-config-client/package.json" ]; then
    rm -rf "$node" && mkdir -p "$node"
    (cd "$node" && npm install --silent --no-audit --no-fund 'cloud-config-client@1.6.2' >/dev/null) \
      || { echo "config-clients: npm install cloud-config-client@1.6.2 failed" >&2; return 1; }
  fi
  PYTHONPATH="$py" python3 - <<'PY' || { echo "config-clients: config-client is not 1.5.0" >&2; return 1; }
import importlib.metadata, sys
sys.exit(0 if importlib.metadata.version("config-client") == "1.5.0" else 1)
PY
  node -e "process.exit(require('$node/node_modules/cloud-config-client/package.json').version === '1.6.2' ? 0 : 1)" \
    || { echo "config-clients: cloud-config-client is not 1.6.2" >&2; return 1; }
  export PALISADE_PY_CONFIG_CLIENT="$py" PALISADE_NODE_CONFIG_CLIENT="$node"
  echo "config-clients: config-client 1.5.0 in $py, cloud-config-client 1.6.2 in $node"
}
palisade_config_clients
