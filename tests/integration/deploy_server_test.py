"""Deploy files against the real kvq-server binary.

  deploy_server_test.py metric-names KVQ_SERVER
      Starts kvq-server on loopback and scrapes /metrics. Every kvq_* metric
      that the Grafana dashboard, the Prometheus alert rules and their unit
      tests query must be exported, with the label values they match on, and
      rate() / histogram_quantile() must be applied to counters / histograms.
  deploy_server_test.py env-flags KVQ_SERVER
      Every KVQ_* variable that the Dockerfile, docker-compose.yml, the
      Kubernetes ConfigMap and scripts/serve set is a kvq-server flag; the
      README's flag table lists every kvq-server flag; and a server started
      with flags only from the environment uses them, with arguments winning
      over the environment (the contract the container image relies on).
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from deploy_common import ROOT, Checker, dockerfile_instructions, load_yaml_documents

DEPLOY = ROOT / "deploy"


class Server:
    """A kvq-server process on loopback, stopped with SIGTERM."""

    def __init__(self, binary, args=(), env=None):
        self.dir = tempfile.TemporaryDirectory(prefix="kvq-deploy-test-")
        ready = os.path.join(self.dir.name, "ready")
        self.log_path = os.path.join(self.dir.name, "server.log")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KVQ_")}
        clean.update(env or {})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, f"--ready_file={ready}", *args],
                                     env=clean, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if os.path.exists(ready):
                fields = dict(line.split("=", 1) for line in open(ready).read().split())
                self.grpc_port = int(fields["grpc_port"])
                self.metrics_port = int(fields["metrics_port"])
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"FAIL: kvq-server did not become ready (exit {self.proc.returncode}):\n"
                         + open(self.log_path).read())
            time.sleep(0.05)

    def scrape(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def parse_exposition(text):
    """-> (types: family -> type, samples: name -> list of label dicts)."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            if m:
                labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
                samples.setdefault(m.group(1), []).append(labels)
    return types, samples


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name


def queried_expressions():
    """(where, PromQL) for everything deploy/ asks Prometheus."""
    out = []
    dashboard = json.loads((DEPLOY / "grafana/dashboards/kvq.json").read_text())
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            out.append((f"dashboard panel {p['title']!r}", t["expr"]))
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        out.append((f"dashboard variable {v['name']}", q.get("query") if isinstance(q, dict) else q))
    for group in load_yaml_documents(DEPLOY / "prometheus/kvq-alerts.yml")[0]["groups"]:
        for rule in group["rules"]:
            out.append((f"alert {rule.get('alert', rule.get('record'))}", rule["expr"]))
    tests = load_yaml_documents(ROOT / "tests/integration/deploy_alerts_test.yml")[0]
    for t in tests["tests"]:
        for s in t.get("input_series", []):
            out.append(("alert unit test series", s["series"]))
    return out


def metric_names(binary):
    c = Checker("deploy/ queries vs kvq-server /metrics")
    server = Server(binary, ["--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                             "--device=cpu", "--pool_bytes=16777216", "--page_bytes=65536"])
    try:
        types, samples = parse_exposition(server.scrape())
    finally:
        server.stop()
    c.check(types, "the scrape declared no metric family")
    exported = set(samples) | set(types)
    print(f"kvq-server exports {len(types)} families")
    for where, expr in queried_expressions():
        names = set(re.findall(r"\bkvq_[a-zA-Z0-9_]+", expr))
        c.check(names or "up{" in expr, f"{where}: queries no kvq metric: {expr}")
        for name in names:
            if not c.check(name in exported, f"{where}: {name} is not exported"):
                continue
            family = family_of(name, types)
            kind = types.get(family)
            # Label values matched with = must occur in the scrape.
            for selector in re.findall(rf"\b{name}\{{([^}}]*)\}}", expr):
                for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
                    if label in ("instance", "job") or op != "=":
                        continue
                    seen = {s.get(label) for s in samples.get(name, [])}
                    c.check(value in seen, f"{where}: {name} has no {label}=\"{value}\" (has {sorted(x for x in seen if x)})")
            if re.search(rf"\b(rate|irate|increase)\(\s*{name}\b", expr):
                c.check(kind == "counter" or name.endswith("_bucket"),
                        f"{where}: rate() of {name}, a {kind}")
            if name.endswith("_bucket") and "histogram_quantile" in expr:
                c.check(kind == "histogram", f"{where}: histogram_quantile over {name}, a {kind}")
    c.finish()


def server_flags(binary):
    """-> (all flag names, flags defined in kvq's own sources)."""
    run = subprocess.run([binary, "--helpfull"], capture_output=True, text=True, timeout=30)
    text = run.stdout + run.stderr
    every, ours, section = set(), set(), ""
    for line in text.splitlines():
        m = re.match(r"\s*Flags from (\S+):", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"\s+--(\w+) ", line)
        if m:
            every.add(m.group(1))
            if not section.startswith(("absl/", "/usr/")) and "absl" not in section:
                ours.add(m.group(1))
    return every, ours


def deploy_env_variables():
    """(where, KVQ_ name) for every variable the deploy files set."""
    out = []
    for stage, word, rest in dockerfile_instructions(ROOT / "Dockerfile"):
        if word == "ENV":
            for kv in shlex.split(rest):
                name = kv.split("=", 1)[0]
                if name.startswith("KVQ_") and not name.startswith("KVQ_BUILD_") and name != "KVQ_CMAKE_ARGS":
                    out.append(("Dockerfile ENV", name))
    compose = load_yaml_documents(DEPLOY / "docker-compose.yml")[0]
    for name in compose["services"]["kvq"].get("environment", {}):
        out.append(("docker-compose.yml kvq environment", name))
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") == "ConfigMap":
                out += [(f"{path.name} ConfigMap", k) for k in doc.get("data", {})]
    serve = (ROOT / "scripts/serve").read_text()
    out += [("scripts/serve", n) for n in set(re.findall(r"\bKVQ_[A-Z_]+", serve))
            if not n.startswith("KVQ_BUILD_")]
    return out


def env_flags(binary):
    c = Checker("KVQ_* variables vs kvq-server flags")
    _, ours = server_flags(binary)
    c.check({"listen", "metrics_listen", "device", "pool_bytes"} <= ours,
            f"--helpfull lists no kvq flags (found {sorted(ours)})")
    variables = deploy_env_variables()
    c.check(len(variables) > 10, "found too few KVQ_* variables in the deploy files")
    for where, name in variables:
        c.check(name[4:].lower() in ours, f"{where}: {name} is no kvq-server flag (--{name[4:].lower()})")
    readme = (ROOT / "README.md").read_text()
    for flag in sorted(ours):
        c.check(re.search(rf"`--{flag}[=`]", readme), f"README's flag table lacks --{flag}")

    # The environment configures the server; an argument beats it.
    env = {"KVQ_LISTEN": "127.0.0.1:0", "KVQ_METRICS_LISTEN": "127.0.0.1:0",
           "KVQ_DEVICE": "cpu", "KVQ_POOL_BYTES": "12582912", "KVQ_PAGE_BYTES": "32768"}
    server = Server(binary, ["--page_bytes=16384"], env)
    try:
        text = server.scrape()
    finally:
        server.stop()

    def value(name):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    c.check(value("kvq_pool_capacity_bytes") == 12582912,
            f"KVQ_POOL_BYTES=12582912 gave kvq_pool_capacity_bytes {value('kvq_pool_capacity_bytes')}")
    c.check(value("kvq_pool_page_bytes") == 16384,
            f"--page_bytes=16384 should beat KVQ_PAGE_BYTES=32768; kvq_pool_page_bytes is "
            f"{value('kvq_pool_page_bytes')}")
    c.check(re.search(r'^kvq_build_info\{[^}]*backend="cpu"', text, re.M),
            "KVQ_DEVICE=cpu did not give backend=\"cpu\" in kvq_build_info")
    c.finish()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("metric-names", "env-flags"):
        sys.exit(__doc__)
    if sys.argv[1] == "metric-names":
        metric_names(sys.argv[2])
    else:
        env_flags(sys.argv[2])
