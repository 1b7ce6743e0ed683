"""deploy/k8s: the Kubernetes manifests.

  deploy_k8s_test.py validate VERSION   every core manifest (deploy/k8s/*.yaml)
      passes `kubernetes-validate --strict` for Kubernetes VERSION, with no
      resource left unchecked (a missing schema is a failure, not a warning).
  deploy_k8s_test.py wiring   the objects fit together: selectors match the
      pod labels, named ports exist, probes are native gRPC on the gRPC port,
      the ConfigMap the DaemonSet loads exists, GPU request, non-root security.
  deploy_k8s_test.py servicemonitor   deploy/k8s/monitoring/servicemonitor.yaml
      (a Prometheus Operator CRD, for which kubernetes-validate has no schema)
      is checked structurally: known fields only, and it selects the headless
      Service's metrics port in the right namespace.
"""

import subprocess
import sys

from deploy_common import ROOT, Checker, load_yaml_documents

K8S = ROOT / "deploy" / "k8s"
CORE = sorted(K8S.glob("*.yaml"))


def objects(paths):
    out = []
    for path in paths:
        for doc in load_yaml_documents(path):
            out.append((path.relative_to(ROOT), doc))
    return out


def validate(version):
    c = Checker(f"deploy/k8s against Kubernetes {version}")
    c.check(CORE, "no manifests in deploy/k8s")
    venv_bin = sys.executable.rsplit("/", 1)[0]
    for path in CORE:
        c.check(load_yaml_documents(path), f"{path.name} holds no resource")
        run = subprocess.run(
            [f"{venv_bin}/kubernetes-validate", "--strict", "-k", version, str(path)],
            capture_output=True, text=True)
        out = (run.stdout + run.stderr).strip()
        print(out)
        c.check(run.returncode == 0, f"{path.name}: kubernetes-validate exit {run.returncode}")
        for line in out.splitlines():
            c.check(line.startswith("INFO") and " passed " in line,
                    f"{path.name}: not a pass: {line}")
    c.finish()


def kinds(objs):
    out = {}
    for path, o in objs:
        out.setdefault(o.get("kind"), []).append(o)
    return out


def wiring():
    c = Checker("deploy/k8s wiring")
    objs = objects(CORE)
    by_kind = kinds(objs)
    namespaces = {o["metadata"]["name"] for o in by_kind.get("Namespace", [])}
    c.check(namespaces == {"kvq"}, f"one Namespace kvq expected, found {namespaces}")
    for path, o in objs:
        if o["kind"] != "Namespace":
            c.check(o["metadata"].get("namespace") == "kvq",
                    f"{path}: {o['kind']} {o['metadata']['name']} is not in namespace kvq")

    daemonsets = by_kind.get("DaemonSet", [])
    if not c.check(len(daemonsets) == 1, f"one DaemonSet expected, found {len(daemonsets)}"):
        c.finish()
    ds = daemonsets[0]
    pod = ds["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    selector = ds["spec"]["selector"]["matchLabels"]
    c.check(selector.items() <= pod_labels.items(), "DaemonSet selector does not match its pod labels")
    spec = pod["spec"]
    containers = spec["containers"]
    c.check(len(containers) == 1, "one container expected")
    kvq = containers[0]
    ports = {p["name"]: p["containerPort"] for p in kvq.get("ports", [])}
    c.check(ports.get("grpc") == 50051 and ports.get("metrics") == 9400,
            f"container ports must be grpc 50051 and metrics 9400, are {ports}")

    # Flags come from the ConfigMap; it must exist and agree with the ports.
    cms = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    refs = [e["configMapRef"]["name"] for e in kvq.get("envFrom", []) if "configMapRef" in e]
    c.check(refs, "the container loads no ConfigMap with envFrom")
    for ref in refs:
        if c.check(ref in cms, f"envFrom names ConfigMap {ref}, which is not in deploy/k8s"):
            data = cms[ref].get("data", {})
            c.check(all(k.startswith("KVQ_") for k in data), "ConfigMap keys must all be KVQ_<FLAG>")
            c.check(data.get("KVQ_LISTEN", "").endswith(f":{ports.get('grpc')}"),
                    "KVQ_LISTEN's port differs from the grpc containerPort")
            c.check(data.get("KVQ_METRICS_LISTEN", "").endswith(f":{ports.get('metrics')}"),
                    "KVQ_METRICS_LISTEN's port differs from the metrics containerPort")
            c.check(data.get("KVQ_LISTEN", "").startswith("0.0.0.0:"), "KVQ_LISTEN must bind 0.0.0.0")
            grace = int(data.get("KVQ_SHUTDOWN_GRACE_SECONDS", 10))
            # The server exits at most 1 s after its grace (server/service/main.cc).
            c.check(spec.get("terminationGracePeriodSeconds", 30) > grace + 1,
                    "terminationGracePeriodSeconds must exceed KVQ_SHUTDOWN_GRACE_SECONDS + 1 s")
    c.check(spec.get("enableServiceLinks") is False,
            "enableServiceLinks must be false: service variables (KVQ_PORT, ...) would reach the server's KVQ_* flags")

    for probe in ("livenessProbe", "readinessProbe"):
        p = kvq.get(probe, {})
        c.check("grpc" in p, f"{probe} must be a native gRPC probe")
        c.check(p.get("grpc", {}).get("port") == ports.get("grpc"), f"{probe} must probe the gRPC port")
    res = kvq.get("resources", {})
    c.check(str(res.get("limits", {}).get("nvidia.com/gpu")) == "1", "limits must ask for nvidia.com/gpu: 1")
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            c.check(r in res.get(kind, {}), f"resources.{kind}.{r} missing")

    psc = spec.get("securityContext", {})
    csc = kvq.get("securityContext", {})
    c.check(psc.get("runAsNonRoot") or csc.get("runAsNonRoot"), "runAsNonRoot missing")
    c.check((csc.get("runAsUser") or psc.get("runAsUser")) == 1000, "runAsUser must be 1000 (the image's ubuntu)")
    c.check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    c.check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    c.check(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities must drop ALL")

    ann = pod["metadata"].get("annotations", {})
    c.check(ann.get("prometheus.io/scrape") == "true", "pod lacks prometheus.io/scrape: \"true\"")
    c.check(ann.get("prometheus.io/port") == str(ports.get("metrics")),
            "prometheus.io/port differs from the metrics port")

    services = {o["metadata"]["name"]: o for o in by_kind.get("Service", [])}
    headless = [s for s in services.values() if s["spec"].get("clusterIP") == "None"]
    local = [s for s in services.values() if s["spec"].get("internalTrafficPolicy") == "Local"]
    c.check(len(headless) == 1, "one headless Service (clusterIP: None) expected")
    c.check(len(local) == 1, "one node-local Service (internalTrafficPolicy: Local) expected")
    for name, s in services.items():
        sel = s["spec"].get("selector", {})
        c.check(sel and sel.items() <= pod_labels.items(),
                f"Service {name} selector {sel} does not select the DaemonSet's pods")
        for p in s["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            ok = target in ports if isinstance(target, str) else target in ports.values()
            c.check(ok, f"Service {name} port {p.get('name')} targets {target}, no such container port")
    if headless:
        names = {p["name"] for p in headless[0]["spec"]["ports"]}
        c.check({"grpc", "metrics"} <= names, "the headless Service must expose grpc and metrics")
    c.finish()


# Fields of monitoring.coreos.com/v1 ServiceMonitor that this repository may
# use (a subset of the CRD's schema); anything else is most likely a typo.
SM_SPEC = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels",
           "podTargetLabels", "sampleLimit", "targetLimit", "attachMetadata"}
SM_ENDPOINT = {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
               "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
               "params", "followRedirects", "enableHttp2", "tlsConfig", "filterRunning"}
SM_RELABEL = {"sourceLabels", "separator", "targetLabel", "regex", "modulus",
              "replacement", "action"}


def duration_ok(v):
    import re
    return isinstance(v, str) and re.fullmatch(r"(\d+(ms|s|m|h))+", v) is not None


def servicemonitor():
    c = Checker("deploy/k8s/monitoring/servicemonitor.yaml (structural)")
    objs = objects(sorted((K8S / "monitoring").glob("*.yaml")))
    sms = [o for _, o in objs if o.get("kind") == "ServiceMonitor"]
    if not c.check(len(sms) == 1, f"one ServiceMonitor expected, found {len(sms)}"):
        c.finish()
    sm = sms[0]
    c.check(sm.get("apiVersion") == "monitoring.coreos.com/v1", "apiVersion must be monitoring.coreos.com/v1")
    c.check(set(sm) <= {"apiVersion", "kind", "metadata", "spec"}, f"unknown top-level fields {set(sm)}")
    meta = sm.get("metadata", {})
    c.check(meta.get("name") and meta.get("namespace") == "kvq", "metadata needs a name and namespace kvq")
    spec = sm.get("spec", {})
    c.check(set(spec) <= SM_SPEC, f"unknown spec fields {set(spec) - SM_SPEC}")

    core = kinds(objects(CORE))
    services = [s for s in core.get("Service", []) if s["metadata"]["namespace"] in
                spec.get("namespaceSelector", {}).get("matchNames", [meta.get("namespace")])]
    want = spec.get("selector", {}).get("matchLabels", {})
    c.check(want, "spec.selector.matchLabels is empty")
    chosen = [s for s in services if want.items() <= s["metadata"].get("labels", {}).items()]
    c.check(len(chosen) == 1, f"selector {want} matches {len(chosen)} Services, expected exactly one")
    if chosen:
        c.check(chosen[0]["spec"].get("clusterIP") == "None",
                "the ServiceMonitor should select the headless Service (every pod an endpoint)")
    port_names = {p["name"] for s in chosen for p in s["spec"]["ports"]}
    endpoints = spec.get("endpoints", [])
    c.check(endpoints, "spec.endpoints is empty")
    for e in endpoints:
        c.check(set(e) <= SM_ENDPOINT, f"unknown endpoint fields {set(e) - SM_ENDPOINT}")
        c.check(e.get("port") in port_names, f"endpoint port {e.get('port')!r} is not a port of the selected Service")
        c.check(e.get("port") == "metrics", "endpoint must scrape the metrics port")
        c.check(e.get("path", "/metrics") == "/metrics", "endpoint path must be /metrics")
        for d in ("interval", "scrapeTimeout"):
            if d in e:
                c.check(duration_ok(e[d]), f"endpoint {d} {e[d]!r} is not a duration")
        for r in e.get("relabelings", []):
            c.check(set(r) <= SM_RELABEL, f"unknown relabeling fields {set(r) - SM_RELABEL}")
    c.finish()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "validate" and len(sys.argv) == 3:
        validate(sys.argv[2])
    elif mode == "wiring":
        wiring()
    elif mode == "servicemonitor":
        servicemonitor()
    else:
        sys.exit(__doc__)
