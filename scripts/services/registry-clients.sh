# Sourced by scripts/test.sh. Installs the third-party Eureka clients the registry interop test
# drives (registry-server/tests/interop.rs): py_eureka_client 0.13.3 into a venv and
# eureka-js-client 4.5.0 into a node_modules folder, both under target/interop. Idempotent: quick
# when already installed. Starts no process (the test runs our server in-process on 127.0.0.1).
# Exports PALISADE_PY_EUREKA_PYTHON and PALISADE_EUREKA_JS_NODE_PATH.

registry_clients_install() {
  local dir="$PWD/target/interop"
  mkdir -p "$dir"
  local py="$dir/pyenv/bin/python"
  if ! "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version("py_eureka_client") != "0.13.3")' 2>/dev/null; then
    echo "installing py_eureka_client 0.13.3 into $dir/pyenv"
    python3 -m venv "$dir/pyenv" || { echo "registry-clients: cannot create a Python venv" >&2; return 1; }
    "$py" -m pip install --quiet --disable-pip-version-check 'py_eureka_client==0.13.3' \
      || { echo "registry-clients: pip install py_eureka_client==0.13.3 failed" >&2; return 1; }
  fi
  local js="$dir/js"
  if ! node -e 'process.exit(require(process.argv[1] + "/node_modules/eureka-js-client/package.json").version === "4.5.0" ? 0 : 1)' "$js" 2>/dev/null; then
    echo "installing eureka-js-client 4.5.0 into $js"
    mkdir -p "$js"
    [ -f "$js/package.json" ] || echo '{"name":"palisade-interop","private":true}' >"$js/package.json"
    (cd "$js" && npm install --no-audit --no-fund --silent eureka-js-client@4.5.0) \
      || { echo "registry-clients: npm install eureka-js-client@4.5.0 failed" >&2; return 1; }
  fi
  "$py" -c 'import py_eureka_client' || { echo "registry-clients: py_eureka_client does not import" >&2; return 1; }
  node -e 'require(process.argv[1])' "$js/node_modules/eureka-js-client" \
    || { echo "registry-clients: eureka-js-client does not load" >&2; return 1; }
  export PALISADE_PY_EUREKA_PYTHON="$py"
  export PALISADE_EUREKA_JS_NODE_PATH="$js/node_modules"
}

registry_clients_install || { echo "registry-clients: FAILED to install the Eureka interop clients" >&2; exit 1; }
