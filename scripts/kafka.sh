#!/usr/bin/env bash
# The local Apache Kafka broker (KRaft, one node), installed and run by the project's scripts.
#
#   scripts/kafka.sh install             fetch Kafka $KAFKA_VERSION's jars from Maven Central
#                                        into the machine's cache, unless already there
#   scripts/kafka.sh libs                print the directory of those jars (the classpath)
#   scripts/kafka.sh start PORT DIR [test]
#                                        start a broker on 127.0.0.1:PORT with its log, config
#                                        and data in DIR (formatted on first use, kept across
#                                        restarts), wait until it answers a metadata request,
#                                        and print its pid. `test` tunes it for tests (no
#                                        initial rebalance delay).
#   scripts/kafka.sh stop DIR            stop the broker started in DIR (SIGTERM: a clean
#                                        shutdown, then SIGKILL after 30 s)
#
# The jars are a plain Maven dependency set (org.apache.kafka:kafka_2.13 is the broker and
# pulls the rest); the tarball's download site is not reachable from every machine, Maven
# Central is. See docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

KAFKA_VERSION=4.1.1
LOG4J_VERSION=2.24.3 # the Log4j 2 that Kafka $KAFKA_VERSION depends on
CACHE="${SNEAKERSTOP_TOOLS:-$HOME/.cache/sneakerstop}/kafka-$KAFKA_VERSION-log4j-$LOG4J_VERSION"
LIBS="$CACHE/libs"

install() {
  [ -f "$CACHE/.complete" ] && return 0
  command -v java >/dev/null || die "Apache Kafka needs Java 17 or newer (apt-get install -y openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "fetching Apache Kafka needs Maven (apt-get install -y maven)"
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central (once per machine)"
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  # The broker (kafka_2.13), the command-line tools (kafka-tools: the readiness check
  # below and anyone's `kafka-topics`) and the SLF4J-to-Log4j 2 binding the tarball ships
  # (without it the broker's log goes nowhere), runtime scope: what the tarball's libs/ holds.
  cat >"$CACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sneakerstop.local</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  mvn -q -B -f "$CACHE/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime >&2
  touch "$CACHE/.complete"
}

# Whether process $1 runs. A killed broker is no longer our child (it runs in a session of
# its own), and where nothing reaps it, it lingers as a zombie that `kill -0` still finds.
alive() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

# A new cluster id, as `kafka-storage random-uuid` makes one (a random UUID in unpadded
# URL-safe base64, never starting with "-", which the tool would read as an option), without
# starting a JVM for it.
cluster_id() {
  python3 -c '
import base64, uuid
while True:
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not id.startswith("-"):
        print(id)
        break'
}

java_cmd() {
  java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$1/log4j2.properties" -cp "$LIBS/*" "${@:2}"
}

# With KAFKA_SASL_SSL_PORT set, the node also listens there with SASL_SSL, as a managed Kafka
# would: a throwaway self-signed certificate for 127.0.0.1 (DIR/tls/ca.pem is what clients
# trust) and a user `sneakerstop` (SCRAM-SHA-512, added when the storage is formatted, and
# PLAIN) whose password is in DIR/tls/password. DIR/tls/client.env says all of that to a test.
tls() {
  local dir=$1 port=$2
  mkdir -p "$dir/tls"
  if [ ! -f "$dir/tls/broker.p12" ]; then
    head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$dir/tls/password"
    keytool -genkeypair -keystore "$dir/tls/broker.p12" -storetype PKCS12 -storepass "$(cat "$dir/tls/password")" \
      -alias broker -keyalg RSA -keysize 2048 -validity 30 -dname "CN=127.0.0.1" \
      -ext "SAN=ip:127.0.0.1,dns:localhost" >/dev/null 2>&1
    keytool -exportcert -rfc -keystore "$dir/tls/broker.p12" -storetype PKCS12 \
      -storepass "$(cat "$dir/tls/password")" -alias broker -file "$dir/tls/ca.pem" >/dev/null 2>&1
  fi
  cat >"$dir/tls/client.env" <<EOF
KAFKA_SASL_SSL_BROKERS=127.0.0.1:$port
KAFKA_SASL_SSL_CA=$dir/tls/ca.pem
KAFKA_SASL_SSL_USERNAME=sneakerstop
KAFKA_SASL_SSL_PASSWORD=$(cat "$dir/tls/password")
EOF
}

# Writes DIR/server.properties for a single node that is broker and controller at once.
configure() {
  local port=$1 dir=$2 mode=$3 controller_port
  if [ -f "$dir/controller.port" ]; then
    controller_port=$(cat "$dir/controller.port")
  else
    controller_port=$(free_port)
    echo "$controller_port" >"$dir/controller.port"
  fi
  local delay=3000
  [ "$mode" = test ] && delay=0
  local listeners="PLAINTEXT://127.0.0.1:$port" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" secure=""
  if [ -n "${KAFKA_SASL_SSL_PORT:-}" ]; then
    tls "$dir" "$KAFKA_SASL_SSL_PORT"
    local password
    password=$(cat "$dir/tls/password")
    listeners="$listeners,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
    protocols="$protocols,SASL_SSL:SASL_SSL"
    secure="sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_sneakerstop=\"$password\";
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$password
ssl.key.password=$password"
  fi
  cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka.sh; rewritten at every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=$listeners,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
$secure
log.dirs=$dir/data
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Topics are created by the services (as in production), never by a typo.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=$delay
# Consumer groups (Kafka 4's protocol, KIP-848): a member that stops heartbeating — a
# killed process — loses its partitions to the others after 3 s, not Kafka's default 45 s,
# and members hear of a new assignment within a quarter of a second. Why these values:
# docs/reliability.md, "Recovering from a crash".
group.consumer.min.session.timeout.ms=3000
group.consumer.session.timeout.ms=3000
group.consumer.min.heartbeat.interval.ms=250
group.consumer.heartbeat.interval.ms=250
num.partitions=3
# Small and quick to start: a test broker holds little.
offsets.topic.num.partitions=10
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=4
EOF
  cat >"$dir/log4j2.properties" <<EOF
# The broker's own log, quiet unless something is wrong.
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
EOF
}

# Whether the broker started since line $3 of its log: KafkaRaftServer says "Kafka Server
# started" once the node's broker is registered with its controller and unfenced, that is,
# when a metadata request would list it (the port accepting connections is not enough).
# Reading the log costs nothing; asking with Kafka's own tools would start a JVM per look.
answers() {
  local port=$1 dir=$2 from=$3
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
    tail -n +"$((from + 1))" "$dir/broker.log" 2>/dev/null | grep -q 'Kafka Server started'
}

start() {
  local port=$1 dir=$2 mode=${3:-}
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/broker.pid" ] && alive "$(cat "$dir/broker.pid")"; then
    log "Kafka already running in $dir (pid $(cat "$dir/broker.pid"))"
    cat "$dir/broker.pid"
    return 0
  fi
  configure "$port" "$dir" "$mode"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local scram=()
    [ -f "$dir/tls/password" ] && scram=(--add-scram "SCRAM-SHA-512=[name=sneakerstop,password=$(cat "$dir/tls/password")]")
    java_cmd "$dir" kafka.tools.StorageTool format --standalone \
      -t "$(cluster_id)" \
      -c "$dir/server.properties" "${scram[@]}" >/dev/null
  fi
  # Its own session: a ctrl-c meant for `make run` must not stop the broker before the
  # server has drained; the script stops it afterwards.
  local from=0
  [ -f "$dir/broker.log" ] && from=$(wc -l <"$dir/broker.log")
  setsid bash -c "exec java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile='$dir/log4j2.properties' \
    -cp '$LIBS/*' kafka.Kafka '$dir/server.properties'" >"$dir/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/broker.pid"
  local deadline=$((SECONDS + 90))
  until answers "$port" "$dir" "$from"; do
    alive "$pid" || die "Kafka exited; see $dir/broker.log and $dir/stdout.log"
    [ $SECONDS -lt $deadline ] || die "Kafka did not answer on port $port within 90s; see $dir/broker.log"
    sleep 0.1
  done
  echo "$pid"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/broker.pid" ] || return 0
  pid=$(cat "$dir/broker.pid")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/broker.pid"
}

case "${1:-}" in
  install) install ;;
  libs) install; echo "$LIBS" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: $0 install | libs | [KAFKA_SASL_SSL_PORT=P] start PORT DIR [test] | stop DIR" ;;
esac
