"""deploy/docker-compose.yml runs kvq on a GPU and Prometheus scrapes it.

Checks, from the parsed file: services kvq and prometheus (and the optional
grafana behind a profile); kvq publishes 50051 (gRPC) and 9400 (metrics) and
listens there, reserves an NVIDIA GPU, builds from the repository's
Dockerfile; prometheus publishes 9090 and loads deploy/prometheus/; the
Prometheus scrape target is exactly <kvq service name>:<metrics port>; Grafana's
provisioning points at files that exist and at the data source the dashboard
uses.
"""

import json

from deploy_common import ROOT, Checker, load_yaml_documents

c = Checker("deploy/docker-compose.yml")
deploy = ROOT / "deploy"
docs = load_yaml_documents(deploy / "docker-compose.yml")
c.check(len(docs) == 1, f"one YAML document expected, found {len(docs)}")
compose = docs[0] if docs else {}
services = compose.get("services", {})
for name in ("kvq", "prometheus"):
    c.check(name in services, f"service {name!r} missing (have {sorted(services)})")
kvq = services.get("kvq", {})
prom = services.get("prometheus", {})


def published(service):
    """container port -> host port, from short or long port syntax."""
    out = {}
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out[int(p["target"])] = int(p.get("published", p["target"]))
        else:
            parts = str(p).split("/")[0].split(":")
            out[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else None
    return out


def port_of(address):
    return int(str(address).rsplit(":", 1)[1])


kvq_ports = published(kvq)
for port in (50051, 9400):
    c.check(port in kvq_ports, f"kvq must publish container port {port} (publishes {kvq_ports})")
c.check(9090 in published(prom), "prometheus must publish 9090")

env = kvq.get("environment", {})
if isinstance(env, list):
    env = dict(e.split("=", 1) for e in env)
grpc_port = port_of(env.get("KVQ_LISTEN", "0.0.0.0:50051"))
metrics_port = port_of(env.get("KVQ_METRICS_LISTEN", "0.0.0.0:9400"))
c.check(grpc_port == 50051, f"kvq listens for gRPC on {grpc_port}, not 50051")
c.check(metrics_port == 9400, f"kvq serves metrics on {metrics_port}, not 9400")
c.check(str(env.get("KVQ_LISTEN", "")).startswith("0.0.0.0:"),
        "KVQ_LISTEN must bind 0.0.0.0 inside the container")
c.check(str(env.get("KVQ_METRICS_LISTEN", "")).startswith("0.0.0.0:"),
        "KVQ_METRICS_LISTEN must bind 0.0.0.0 inside the container")

devices = (kvq.get("deploy", {}).get("resources", {})
           .get("reservations", {}).get("devices", []))
gpu = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
c.check(gpu, "kvq needs deploy.resources.reservations.devices with driver nvidia, capabilities [gpu]")
if gpu:
    c.check(gpu[0].get("count", gpu[0].get("device_ids")) not in (None, 0),
            "the GPU reservation needs a count or device_ids")

build = kvq.get("build", {})
context = (deploy / build.get("context", ".")).resolve()
c.check(context == ROOT.resolve(), f"kvq builds from {context}, not the repository root")
c.check((context / build.get("dockerfile", "Dockerfile")).is_file(), "kvq's Dockerfile does not exist")
grace = str(kvq.get("stop_grace_period", "10s"))
# The server exits at most 1 s after its grace (server/service/main.cc).
c.check(grace.endswith("s") and int(grace[:-1]) > int(env.get("KVQ_SHUTDOWN_GRACE_SECONDS", 10)) + 1,
        "stop_grace_period must exceed KVQ_SHUTDOWN_GRACE_SECONDS + 1 s so RPCs drain and the server exits")

# Prometheus loads deploy/prometheus and scrapes kvq by service name.
config_path = None
for v in prom.get("volumes", []):
    src, dst = str(v).split(":")[:2]
    if dst == "/etc/prometheus":
        config_path = (deploy / src).resolve()
c.check(config_path == (deploy / "prometheus").resolve(),
        "prometheus must mount ./prometheus at /etc/prometheus")
c.check("--config.file=/etc/prometheus/prometheus.yml" in prom.get("command", []),
        "prometheus must run with --config.file=/etc/prometheus/prometheus.yml")
prom_config = load_yaml_documents(deploy / "prometheus" / "prometheus.yml")[0]
targets = [t for job in prom_config.get("scrape_configs", [])
           for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
c.check(f"kvq:{metrics_port}" in targets,
        f"Prometheus must scrape kvq:{metrics_port} (the kvq service's metrics port); targets {targets}")
for t in targets:
    host = t.rsplit(":", 1)[0]
    c.check(host in services, f"scrape target {t} names no compose service")
    c.check(port_of(t) in (metrics_port, 9090), f"scrape target {t} is not a metrics port")

# Grafana: optional (behind a profile), provisioned from files that exist.
graf = services.get("grafana")
if c.check(graf is not None, "grafana service missing"):
    c.check(graf.get("profiles"), "grafana should be optional (behind a profile)")
    mounts = {}
    for v in graf.get("volumes", []):
        src, dst = str(v).split(":")[:2]
        mounts[dst] = src
    for dst, src in mounts.items():
        if src.startswith("./"):
            c.check((deploy / src).exists(), f"grafana mounts {src}, which does not exist")
    providers = load_yaml_documents(deploy / "grafana/provisioning/dashboards/kvq.yml")[0]["providers"]
    for p in providers:
        path = p["options"]["path"]
        c.check(path in mounts, f"dashboard provider reads {path}, which nothing mounts")
    sources = load_yaml_documents(deploy / "grafana/provisioning/datasources/prometheus.yml")[0]["datasources"]
    uids = {s["uid"] for s in sources}
    c.check(any(s["url"] == "http://prometheus:9090" for s in sources),
            "the Grafana data source must be http://prometheus:9090")
    dashboard = json.loads((deploy / "grafana/dashboards/kvq.json").read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    c.check(used <= uids, f"dashboard uses data sources {used - uids} that are not provisioned")

c.finish()
