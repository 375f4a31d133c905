"""What Minotaur's Kubernetes manifests must promise, checked on the rendered YAML.

    python3 tests/kubernetes/properties.py RENDERED.yaml

The schema validator (kubernetes-validate) says the manifests are valid Kubernetes; this says
they are the deployment the README describes: a rolling update that never lowers the cluster
below its size, readiness and liveness on the right paths, a grace period longer than the
drain, a locked-down container, a disruption budget, and a headless Service whose SRV record is
the one the nodes poll. Prints one line per property; exits 1 listing every property that does
not hold (not only the first), 2 when the file cannot be read.
"""

import re
import sys

import yaml  # PyYAML, installed with kubernetes-validate


class Check:
    def __init__(self):
        self.failed = []

    def that(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.failed.append(what)
        return ok


def one(docs, kind, pred=lambda d: True):
    found = [d for d in docs if d.get("kind") == kind and pred(d)]
    return found[0] if len(found) == 1 else None


def env_map(container):
    """name -> the env entry, and the order of names (Kubernetes expands $(X) from earlier ones)."""
    entries = container.get("env") or []
    return {e["name"]: e for e in entries}, [e["name"] for e in entries]


def port_number(container, port):
    """A probe's or a Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def main(path):
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
    except (OSError, yaml.YAMLError) as e:
        print(f"cannot read {path}: {e}", file=sys.stderr)
        return 2
    c = Check()

    dep = one(docs, "Deployment")
    if not c.that(dep is not None, "exactly one Deployment"):
        return report(c)
    spec = dep.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    containers = pod.get("containers") or []
    if not c.that(len(containers) == 1, "the pod has one container"):
        return report(c)
    ctr = containers[0]
    env, order = env_map(ctr)

    def value(name):
        return (env.get(name) or {}).get("value")

    # Rolling update: one new pod first, no old pod stopped before it is Ready.
    c.that(spec.get("replicas") == 3, "replicas: 3")
    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    c.that(strategy.get("type") == "RollingUpdate", "strategy RollingUpdate")
    c.that(rolling.get("maxUnavailable") == 0, "rollingUpdate.maxUnavailable: 0")
    c.that(rolling.get("maxSurge") == 1, "rollingUpdate.maxSurge: 1")

    # Probes: readiness is /healthz (joined, synced, not draining), liveness is /livez.
    for probe, path_want in (("readinessProbe", "/healthz"), ("livenessProbe", "/livez")):
        get = (ctr.get(probe) or {}).get("httpGet") or {}
        c.that(get.get("path") == path_want, f"{probe}: GET {path_want}")
        c.that(
            port_number(ctr, get.get("port")) == int(value("PORT") or 4000),
            f"{probe} on the HTTP port (PORT={value('PORT')})",
        )

    # Grace period above the drain budget (plus the preStop pause, which counts in it).
    shutdown = value("SHUTDOWN_TIMEOUT_MS")
    c.that(shutdown is not None and shutdown.isdigit(), "SHUTDOWN_TIMEOUT_MS set explicitly")
    pre_stop = ((ctr.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
    pause_s = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] and len(pre_stop) == 2 and pre_stop[1].isdigit() else 0
    grace = pod.get("terminationGracePeriodSeconds")
    c.that(
        isinstance(grace, int) and shutdown is not None and shutdown.isdigit()
        and grace * 1000 > int(shutdown) + pause_s * 1000,
        f"terminationGracePeriodSeconds ({grace} s) > SHUTDOWN_TIMEOUT_MS ({shutdown} ms) + preStop ({pause_s} s)",
    )

    # Locked down: non-root, read-only root, no escalation, no capabilities, bounded memory.
    psc = pod.get("securityContext") or {}
    csc = ctr.get("securityContext") or {}
    c.that(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, "runAsNonRoot: true")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    c.that(isinstance(uid, int) and uid > 0, f"runAsUser non-zero ({uid})")
    c.that(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
    c.that(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    c.that("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), "capabilities drop ALL")
    res = ctr.get("resources") or {}
    c.that(
        "memory" in (res.get("requests") or {}) and "cpu" in (res.get("requests") or {})
        and "memory" in (res.get("limits") or {}),
        "resources: cpu and memory requests, memory limit",
    )
    # The one place the entrypoint writes (the node-name record) is a writable volume.
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    tmp = [m for m in ctr.get("volumeMounts") or [] if m.get("mountPath") == "/tmp"]
    c.that(
        len(tmp) == 1 and "emptyDir" in volumes.get(tmp[0]["name"], {}),
        "/tmp is an emptyDir (the only writable path)",
    )

    # Identity and secret.
    pod_ip = (env.get("POD_IP") or {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    c.that(pod_ip == "status.podIP", "POD_IP from the downward API (status.podIP)")
    c.that(
        value("RELEASE_NODE") == "minotaur@$(POD_IP)"
        and "POD_IP" in order and order.index("POD_IP") < order.index("RELEASE_NODE"),
        "RELEASE_NODE=minotaur@$(POD_IP), POD_IP defined before it",
    )
    c.that(value("RELEASE_DISTRIBUTION") in (None, "name"), "long names (RELEASE_DISTRIBUTION name)")
    cookie = (env.get("RELEASE_COOKIE") or {}).get("valueFrom", {}).get("secretKeyRef") or {}
    c.that(bool(cookie.get("name")) and bool(cookie.get("key")), "RELEASE_COOKIE from a Secret")

    # Discovery: the nodes poll the SRV record of the headless Service's named cluster port.
    headless = one(docs, "Service", lambda d: (d.get("spec") or {}).get("clusterIP") == "None")
    if c.that(headless is not None, "one headless Service (clusterIP: None)"):
        hs = headless["spec"]
        c.that(hs.get("publishNotReadyAddresses") is True, "headless Service publishNotReadyAddresses: true")
        c.that(
            bool(hs.get("selector")) and all(pod_labels.get(k) == v for k, v in hs["selector"].items()),
            "headless Service selects the pods",
        )
        query = value("DNS_CLUSTER_QUERY") or ""
        m = re.fullmatch(r"_([a-z0-9-]+)\._(tcp|udp)\.([a-z0-9-]+)\.\$\(POD_NAMESPACE\)\.svc\.[a-z0-9.-]+", query)
        ns = (env.get("POD_NAMESPACE") or {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        c.that(
            m is not None and ns == "metadata.namespace",
            f"DNS_CLUSTER_QUERY is an SRV name in the pod's namespace ({query})",
        )
        if m:
            port = [p for p in hs.get("ports") or [] if p.get("name") == m.group(1)]
            c.that(
                m.group(3) == headless["metadata"]["name"] and len(port) == 1
                and port[0].get("protocol", "TCP").lower() == m.group(2),
                f"DNS_CLUSTER_QUERY names the headless Service `{m.group(3)}` and its port `{m.group(1)}`",
            )
            cluster_port = int(value("CLUSTER_PORT") or 9000)
            c.that(
                len(port) == 1 and port[0].get("port") == cluster_port
                and port_number(ctr, port[0].get("targetPort")) == cluster_port,
                f"the named port is CLUSTER_PORT ({cluster_port}) as port and target (the SRV port)",
            )

    http = one(docs, "Service", lambda d: (d.get("spec") or {}).get("clusterIP") != "None")
    if c.that(http is not None, "one HTTP Service"):
        ports = http["spec"].get("ports") or []
        c.that(
            any(port_number(ctr, p.get("targetPort")) == int(value("PORT") or 4000) for p in ports),
            "HTTP Service targets PORT",
        )

    pdb = one(docs, "PodDisruptionBudget")
    if c.that(pdb is not None, "a PodDisruptionBudget"):
        ps = pdb.get("spec") or {}
        c.that(ps.get("maxUnavailable") == 1, "PodDisruptionBudget maxUnavailable: 1")
        sel = (ps.get("selector") or {}).get("matchLabels") or {}
        c.that(bool(sel) and all(pod_labels.get(k) == v for k, v in sel.items()), "PodDisruptionBudget selects the pods")

    return report(c)


def report(c):
    if c.failed:
        print(f"{len(c.failed)} properties do not hold: " + "; ".join(c.failed))
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
