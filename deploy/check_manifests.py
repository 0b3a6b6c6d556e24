"""Assertions on the rendered Kubernetes manifests, run by scripts/check-deploy.sh on every
overlay (`kubectl kustomize`'s output): the operational properties that schema validation
and checkov cannot know, each one a defect this project has had.

    python deploy/check_manifests.py OVERLAY_NAME RENDERED.yaml
    python deploy/check_manifests.py --self-test OVERLAY_NAME RENDERED.yaml

The self-test puts each known defect back into a copy of the rendered overlay and fails
unless the checks report it: a check that cannot fail is no check.
"""

import copy
import glob
import json
import re
import sys

import yaml

# What a sneakerstop process may spend after SIGTERM before it exits (see deployment.yaml):
# in-flight requests (bounded by the payment provider's timeout), background tasks, producer flush.
BACKGROUND_DRAIN_SECONDS = 20
PRODUCER_FLUSH_SECONDS = 5
# /readyz runs each check with this deadline (crates/health).
READINESS_CHECK_SECONDS = 2


def seconds(text):
    match = re.fullmatch(r"(\d+)(s|m)?", str(text))
    assert match, f"not a duration in seconds or minutes: {text!r}"
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def exported_metrics():
    """Every metric name the code records (counter!/gauge!/histogram!), histograms with the
    series Prometheus derives from them."""
    names = set()
    for path in glob.glob("crates/*/src/**/*.rs", recursive=True):
        with open(path) as f:
            for kind, name in re.findall(r'(counter|gauge|histogram)!\(\s*"([a-z_]+)"', f.read()):
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


# Selectors are written `metric{...}` or `metric[...]` in the rules and the dashboard.
METRIC_IN_QUERY = re.compile(r"\b([a-z_][a-z0-9_]*)\s*[{\[]")
REQUIRED_ALERTS = {"outbox_oldest_age_seconds", "consumer_lag", "dead_letters_total", "http_requests_total",
                   "http_request_duration_seconds_bucket", "payments_refunds_pending"}


def check_monitoring(by_kind, expect):
    exported = exported_metrics()
    monitors = by_kind.get("ServiceMonitor", [])
    expect(monitors, "no ServiceMonitor: Prometheus (the operator) scrapes nothing")
    services = [s for s in by_kind["Service"] if s["metadata"]["name"].startswith("sneakerstop-")]
    for service in services:
        labels = service["metadata"].get("labels", {})
        ports = {p.get("name") for p in service["spec"]["ports"]}
        expect(
            any(m["spec"]["selector"]["matchLabels"].items() <= labels.items()
                and any(e["port"] in ports and e.get("path") == "/metrics" for e in m["spec"]["endpoints"])
                for m in monitors),
            f"no ServiceMonitor scrapes {service['metadata']['name']}'s /metrics",
        )
    used = set()
    for rule_set in by_kind.get("PrometheusRule", []):
        for group in rule_set["spec"]["groups"]:
            for rule in group["rules"]:
                names = set(METRIC_IN_QUERY.findall(rule["expr"]))
                used |= names
                unknown = names - exported
                expect(not unknown, f"alert {rule['alert']} watches metrics the code never records: {sorted(unknown)}")
    missing = REQUIRED_ALERTS - used
    expect(not missing, f"no alert watches {sorted(missing)}")
    dashboards = [c for c in by_kind["ConfigMap"] if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    expect(dashboards, "no Grafana dashboard ConfigMap")
    for config_map in dashboards:
        for body in config_map["data"].values():
            queries = [t["expr"] for panel in json.loads(body)["panels"] for t in panel["targets"]]
            unknown = {n for q in queries for n in METRIC_IN_QUERY.findall(q)} - exported
            expect(not unknown, f"the dashboard charts metrics the code never records: {sorted(unknown)}")


def check_broker_security(config, kafka_config, services, kafka_pod, expect):
    """Production-shaped overlays: nothing reaches or leaves Kafka in clear, and every password
    comes from a Secret."""
    protocols = dict(item.split(":") for item in kafka_config["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    clear = sorted(name for name, protocol in protocols.items() if protocol not in ("SSL", "SASL_SSL"))
    expect(not clear, f"Kafka listeners in clear: {clear}")
    ports = {}
    for listener in kafka_config["KAFKA_LISTENERS"].split(","):
        name, address = listener.split("://")
        ports[address.rsplit(":", 1)[1]] = protocols.get(name)
    expect(config.get("KAFKA_SECURITY_PROTOCOL") == "sasl_ssl", "the services connect to Kafka without TLS and SASL")
    dialled = {broker.rsplit(":", 1)[1] for broker in config["KAFKA_BROKERS"].split(",")}
    expect(all(ports.get(port) == "SASL_SSL" for port in dialled),
           f"the services dial Kafka ports {sorted(dialled)}, not its SASL_SSL listener")
    ca = config.get("KAFKA_SSL_CA_LOCATION", "")
    for deployment in services:
        server = deployment["spec"]["template"]["spec"]["containers"][0]
        mounts = [m["mountPath"].rstrip("/") for m in server.get("volumeMounts", [])]
        expect(ca and any(ca.startswith(m + "/") for m in mounts),
               f"{deployment['metadata']['name']}: the Kafka CA ({ca or 'KAFKA_SSL_CA_LOCATION unset'}) is on no volume")
        password = next((e for e in server.get("env", []) if e["name"] == "KAFKA_SASL_PASSWORD"), {})
        reference = password.get("valueFrom", {}).get("secretKeyRef", {})
        expect(reference and not reference.get("optional"),
               f"{deployment['metadata']['name']}: KAFKA_SASL_PASSWORD is not required from a Secret")
    for container in kafka_pod["containers"]:
        literal = [e["name"] for e in container.get("env", []) if "PASSWORD" in e["name"] and "value" in e]
        expect(not literal, f"Kafka passwords written into the manifest: {literal}")


def check(overlay, objects):
    problems = []

    def expect(condition, message):
        if not condition:
            problems.append(message)

    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    config = next(o for o in by_kind["ConfigMap"] if o["metadata"]["name"] == "sneakerstop-config")["data"]
    kafka_config = next(o for o in by_kind["ConfigMap"] if o["metadata"]["name"] == "kafka-config")["data"]

    # Secrets never travel in the manifests: Terraform (or kubectl) creates them.
    expect("Secret" not in by_kind, "a Secret is rendered into the manifests")

    services = [d for d in by_kind["Deployment"] if d["metadata"]["name"].startswith("sneakerstop-")]
    expect(len(services) == 6, f"expected six Deployments (five services, the storefront), found {len(services)}")
    images = set()
    for deployment in services:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        server = pod["containers"][0]
        images.add(server["image"])
        # Serving pods never migrate; an init container does, outside the probes.
        expect(config.get("MIGRATE_ON_START") == "false", "serving pods would migrate (MIGRATE_ON_START)")
        inits = pod.get("initContainers", [])
        service = server["args"][-1]
        if service == "storefront":
            # It owns no data: nothing to migrate, no database to reach.
            env = [e["name"] for e in server.get("env", [])]
            expect(not inits and "DATABASE_URL" not in env, f"{name}: the storefront has a database or migrates")
        else:
            expect(
                any(c["args"] == ["migrate", service] for c in inits),
                f"{name}: no init container runs `sneakerstop migrate {service}`",
            )
        images.update(c["image"] for c in inits)
        # No probe may time out before the check it runs does.
        readiness = server["readinessProbe"]
        expect(
            readiness.get("timeoutSeconds", 1) > READINESS_CHECK_SECONDS,
            f"{name}: the readiness probe times out before /readyz's {READINESS_CHECK_SECONDS} s checks do",
        )
        # The grace period covers the worst-case drain.
        pre_stop = server.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        expect(pre_stop > 0, f"{name}: no preStop pause while endpoints still route to a stopping pod")
        worst = (
            pre_stop
            + seconds(config.get("PAYMENT_PROVIDER_TIMEOUT", "20s"))
            + BACKGROUND_DRAIN_SECONDS
            + PRODUCER_FLUSH_SECONDS
        )
        grace = pod.get("terminationGracePeriodSeconds", 30)
        expect(grace > worst, f"{name}: terminationGracePeriodSeconds {grace} does not exceed the worst-case {worst} s")
    expect(len(images) == 1, f"the service containers run different images: {sorted(images)}")
    # An autoscaler owns every service's replica count; no Deployment states one to undo it.
    for deployment in services:
        name = deployment["metadata"]["name"]
        expect("replicas" not in deployment["spec"], f"{name} states a replica count that an apply would reset")
        expect(
            any(h["spec"]["scaleTargetRef"]["name"] == name for h in by_kind.get("HorizontalPodAutoscaler", [])),
            f"{name} has no HorizontalPodAutoscaler",
        )
    # Spans leave the services for a collector, and one in the overlay answers at that address.
    endpoint = config.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    expect(endpoint, "no OTLP endpoint: no trace leaves the services")
    match = re.fullmatch(r"https?://([^:/]+):(\d+)/?", endpoint)
    if endpoint and match and "." not in match.group(1):
        host, port = match.group(1), int(match.group(2))
        expect(
            any(svc["metadata"]["name"] == host and any(p["port"] == port for p in svc["spec"]["ports"])
                for svc in by_kind["Service"]),
            f"nothing in the overlay answers at the OTLP endpoint {endpoint}",
        )
    # The services' port is open to the ingress controller and Prometheus, not to any pod.
    for policy in by_kind.get("NetworkPolicy", []):
        if policy["metadata"]["name"].startswith("sneakerstop-"):
            rules = policy["spec"].get("ingress", [])
            expect(rules and all(rule.get("from") for rule in rules), f"{policy['metadata']['name']} admits any pod")

    # Production-shaped overlays (several Kafka nodes) are watched by Prometheus.
    kafka_nodes = next(s for s in by_kind["StatefulSet"] if s["metadata"]["name"] == "kafka")["spec"].get("replicas", 1)
    if kafka_nodes > 1:
        kafka_pod = next(s for s in by_kind["StatefulSet"] if s["metadata"]["name"] == "kafka")["spec"]["template"]["spec"]
        check_broker_security(config, kafka_config, services, kafka_pod, expect)
    if kafka_nodes > 1 or "ServiceMonitor" in by_kind:
        check_monitoring(by_kind, expect)

    # Kafka: data in a directory inside the volume, never its root (lost+found).
    for statefulset in by_kind["StatefulSet"]:
        name = statefulset["metadata"]["name"]
        pod = statefulset["spec"]["template"]["spec"]
        labels = statefulset["spec"]["template"]["metadata"]["labels"]
        budgets = [
            b
            for b in by_kind.get("PodDisruptionBudget", [])
            if b["spec"]["selector"].get("matchLabels", {}).items() <= labels.items()
        ]
        expect(budgets, f"StatefulSet {name} has no PodDisruptionBudget")
        if name == "kafka":
            mounts = [m["mountPath"].rstrip("/") for m in pod["containers"][0].get("volumeMounts", [])]
            log_dirs = kafka_config["KAFKA_LOG_DIRS"].rstrip("/")
            expect(log_dirs not in mounts, f"Kafka's log.dirs {log_dirs} is a volume's root")
            expect(any(log_dirs.startswith(m + "/") for m in mounts), f"Kafka's log.dirs {log_dirs} is on no volume")
            spread = pod.get("topologySpreadConstraints", [])
            expect(spread, "the Kafka nodes do not spread over hosts")
            if statefulset["spec"].get("replicas", 1) > 1:
                expect(
                    all(c["whenUnsatisfiable"] == "DoNotSchedule" for c in spread),
                    "a multi-node Kafka may put two voters on one host",
                )
            readiness = pod["containers"][0]["readinessProbe"]
            expect("tcpSocket" not in readiness, "Kafka is ready as soon as its port opens, replicas caught up or not")
    return problems


def find(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def server(objects):
    return find(objects, "Deployment", "sneakerstop-orders")[0]["spec"]["template"]["spec"]


def kafka(objects):
    return find(objects, "StatefulSet", "kafka")[0]["spec"]["template"]["spec"]


# Each defect: (what it is, how to put it back, words the report must contain).
DEFECTS = [
    ("log.dirs at the volume's root",
     lambda o: find(o, "ConfigMap", "kafka-config")[0]["data"].update(KAFKA_LOG_DIRS="/var/lib/kafka/data"),
     "volume's root"),
    ("no PDB for Kafka", lambda o: o.remove(find(o, "PodDisruptionBudget", "kafka")[0]), "no PodDisruptionBudget"),
    ("Kafka ready on an open port", lambda o: kafka(o)["containers"][0].update(readinessProbe={"tcpSocket": {"port": 9092}}),
     "port opens"),
    ("Kafka not spread", lambda o: kafka(o).pop("topologySpreadConstraints"), "spread"),
    ("readiness probe shorter than its checks", lambda o: server(o)["containers"][0]["readinessProbe"].pop("timeoutSeconds"),
     "times out"),
    ("grace period shorter than the drain", lambda o: server(o).update(terminationGracePeriodSeconds=40), "worst-case"),
    ("no preStop pause", lambda o: server(o)["containers"][0].pop("lifecycle"), "preStop"),
    ("migrations in the serving pod", lambda o: server(o).pop("initContainers"), "init container"),
    ("serving pods migrate", lambda o: find(o, "ConfigMap", "sneakerstop-config")[0]["data"].update(MIGRATE_ON_START="true"),
     "MIGRATE_ON_START"),
    ("any pod may call a service",
     lambda o: find(o, "NetworkPolicy", "sneakerstop-orders")[0]["spec"]["ingress"][0].pop("from"), "admits any pod"),
    ("a Deployment that states its replicas", lambda o: find(o, "Deployment", "sneakerstop-orders")[0]["spec"].update(replicas=2),
     "replica count"),
    ("a service without an autoscaler", lambda o: o.remove(find(o, "HorizontalPodAutoscaler", "sneakerstop-orders")[0]),
     "HorizontalPodAutoscaler"),
    ("no OTLP endpoint", lambda o: find(o, "ConfigMap", "sneakerstop-config")[0]["data"].pop("OTEL_EXPORTER_OTLP_ENDPOINT"),
     "no OTLP endpoint"),
    ("a Secret in the manifests", lambda o: o.append({"kind": "Secret", "metadata": {"name": "leak"}, "data": {}}), "Secret"),
    ("one service on another image",
     lambda o: server(o)["containers"][0].update(image="ghcr.io/sneakerstop/sneakerstop:0.1.0-old"), "different images"),
]


def self_test(overlay, objects):
    missed = []
    for what, inject, words in DEFECTS:
        broken = copy.deepcopy(objects)
        inject(broken)
        if not any(words in problem for problem in check(overlay, broken)):
            missed.append(what)
    if find(objects, "Service", "otel-collector"):
        broken = copy.deepcopy(objects)
        broken.remove(find(broken, "Service", "otel-collector")[0])
        if not any("answers at the OTLP endpoint" in p for p in check(overlay, broken)):
            missed.append("an OTLP endpoint nothing answers at")
    if find(objects, "StatefulSet", "kafka")[0]["spec"].get("replicas", 1) > 1:
        for what, inject, words in [
            ("no ServiceMonitor", lambda o: o.remove(find(o, "ServiceMonitor")[0]), "ServiceMonitor"),
            ("a Kafka listener in clear",
             lambda o: find(o, "ConfigMap", "kafka-config")[0]["data"].update(
                 KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="BROKER:SSL,CONTROLLER:SSL,CLIENT:PLAINTEXT"), "in clear"),
            ("services without TLS to Kafka",
             lambda o: find(o, "ConfigMap", "sneakerstop-config")[0]["data"].update(KAFKA_SECURITY_PROTOCOL="plaintext"),
             "without TLS"),
            ("services dialling the inter-broker listener",
             lambda o: find(o, "ConfigMap", "sneakerstop-config")[0]["data"].update(KAFKA_BROKERS="kafka-0.kafka-headless:9092"),
             "SASL_SSL listener"),
            ("the Kafka CA not mounted", lambda o: server(o)["containers"][0].pop("volumeMounts"), "on no volume"),
            ("an optional Kafka password",
             lambda o: next(e for e in server(o)["containers"][0]["env"] if e["name"] == "KAFKA_SASL_PASSWORD")
             ["valueFrom"]["secretKeyRef"].update(optional=True),
             "KAFKA_SASL_PASSWORD"),
            ("a Kafka password in the manifest",
             lambda o: kafka(o)["containers"][0].setdefault("env", []).append({"name": "KAFKA_SSL_KEY_PASSWORD", "value": "x"}),
             "passwords written"),
            ("an alert on a metric that does not exist",
             lambda o: find(o, "PrometheusRule")[0]["spec"]["groups"][0]["rules"][0].update(expr="outbox_age_seconds{} > 1"),
             "never records"),
        ]:
            broken = copy.deepcopy(objects)
            inject(broken)
            if not any(words in p for p in check(overlay, broken)):
                missed.append(what)
        broken = copy.deepcopy(objects)
        kafka(broken)["topologySpreadConstraints"][0]["whenUnsatisfiable"] = "ScheduleAnyway"
        if not any("two voters" in p for p in check(overlay, broken)):
            missed.append("voters sharing a host")
    for what in missed:
        print(f"{overlay}: the checks did not catch: {what}", file=sys.stderr)
    if missed:
        sys.exit(1)
    print(f"{overlay}: every known defect put back is caught")


def main():
    if sys.argv[1] == "--self-test":
        with open(sys.argv[3]) as f:
            self_test(sys.argv[2], [o for o in yaml.safe_load_all(f) if o])
        return
    overlay, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    problems = check(overlay, objects)
    for problem in problems:
        print(f"{overlay}: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{overlay}: {len(objects)} objects, every operational check holds")


if __name__ == "__main__":
    main()
