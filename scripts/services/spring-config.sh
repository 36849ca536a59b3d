# Sourced by scripts/test.sh. Builds (once; Maven caches its downloads in ~/.m2) the two tiny
# Spring Boot apps of config-server/interop/spring: the real Spring Cloud Config Server 5.0.x and
# a Spring Boot config client (spring-cloud-starter-config), Spring Boot 4.0.7 / Spring Cloud
# 2025.1.4. No server is started here: each test starts the real server on a free 127.0.0.1 port
# against the git repository it creates, and stops it when done.
# Exports PALISADE_SPRING_CONFIG_SERVER_JAR and PALISADE_SPRING_CONFIG_CLIENT_JAR.

palisade_spring_config() {
  local dir
  dir="$(pwd)/config-server/interop/spring"
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    echo "spring-config: installing a JDK 17 and Maven from Debian" >&2
    (apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null) \
      || { echo "spring-config: apt-get install openjdk-17-jdk-headless maven failed" >&2; return 1; }
  fi
  local server="$dir/server/target/spring-config-server.jar" client="$dir/client/target/spring-config-client.jar"
  # Rebuild only when a pom or a source is newer than the jars.
  if [ ! -f "$server" ] || [ ! -f "$client" ] \
    || [ -n "$(find "$dir" -path '*/target' -prune -o -type f -newer "$server" -print -quit)" ] \
    || [ -n "$(find "$dir" -path '*/target' -prune -o -type f -newer "$client" -print -quit)" ]; then
    (cd "$dir" && mvn -B -q package -DskipTests) \
      || { echo "spring-config: the Maven build of $dir failed" >&2; return 1; }
  fi
  [ -f "$server" ] && [ -f "$client" ] \
    || { echo "spring-config: the jars are missing after the build" >&2; return 1; }
  export PALISADE_SPRING_CONFIG_SERVER_JAR="$server" PALISADE_SPRING_CONFIG_CLIENT_JAR="$client"
  echo "spring-config: $server, $client"
}
palisade_spring_config
