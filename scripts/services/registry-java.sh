# Sourced by scripts/test.sh. Builds the Java Eureka server and client (Spring Cloud 2025.1.4,
# Boot 4.0.7; registry-server/tests/java) once with Maven (~/.m2 caches the dependencies), starts
# the Java Eureka server on 127.0.0.1, registers its PID, and exports PALISADE_JAVA_EUREKA_URL and
# PALISADE_JAVA_EUREKA_CLIENT_JAR and PALISADE_JAVA_EUREKA_SERVER_JAR (the peering test starts its
# own Java server) for registry-server/tests/java_interop.rs.

registry_java_start() {
  local dir="$PWD/registry-server/tests/java"
  local server_jar="$dir/eureka-server/target/eureka-server.jar"
  local client_jar="$dir/eureka-client/target/eureka-client.jar"
  local stamp="$dir/target/sources.sha"
  local sha
  sha="$(cd "$dir" && find . -path '*/target' -prune -o -type f -print | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$server_jar" ] || [ ! -f "$client_jar" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sha" ]; then
    echo "building the Java Eureka server and client with Maven"
    (cd "$dir" && mvn -B -q -DskipTests package) || { echo "registry-java: mvn package failed" >&2; return 1; }
    mkdir -p "$dir/target" && echo "$sha" >"$stamp"
  fi
  local port=18761
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  local log="$dir/target/eureka-server.log"
  java -XX:TieredStopAtLevel=1 -jar "$server_jar" --server.port="$port" >"$log" 2>&1 &
  local pid=$!
  echo "$pid" >>"$PALISADE_PIDS_FILE"
  local url="http://127.0.0.1:$port/eureka/"
  local i
  for i in $(seq 1 180); do
    if curl -sf -o /dev/null "${url}apps/"; then
      echo "Java Eureka server up at $url after ${i}s (pid $pid)"
      export PALISADE_JAVA_EUREKA_URL="$url"
      export PALISADE_JAVA_EUREKA_CLIENT_JAR="$client_jar"
      export PALISADE_JAVA_EUREKA_SERVER_JAR="$server_jar"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "registry-java: the Java Eureka server exited; log:" >&2; tail -30 "$log" >&2; return 1
    fi
    sleep 1
  done
  echo "registry-java: the Java Eureka server did not answer within 180 s; log:" >&2
  tail -30 "$log" >&2
  return 1
}

registry_java_start || { echo "registry-java: FAILED to start the Java Eureka server" >&2; exit 1; }
