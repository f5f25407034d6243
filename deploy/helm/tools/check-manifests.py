#!/usr/bin/env python3
"""Checks the manifests `helm template deploy/helm/spike-rs` renders (as the JSON array
yaml2json makes of them). Standard library only. Run by .ci/helm:

    check-manifests.py --variant sled|postgres|identities|spike-values rendered.json

Every check that fails is printed; the exit code is 1 if any did.
"""

import argparse
import json
import os
import re
import sys

WORKLOAD_KINDS = {"StatefulSet", "Deployment", "DaemonSet", "Job", "CronJob", "Pod"}
CSI_DRIVER = "csi.spiffe.io"

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def name_of(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_spec(doc):
    kind = doc["kind"]
    if kind == "Pod":
        return doc["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def pod_labels(doc):
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return doc["spec"]["template"]["metadata"].get("labels", {})


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    e = env_of(container).get(name)
    return None if e is None else e.get("value")


def by_component(docs, kind, component):
    return [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]


def one(docs, kind, component):
    found = by_component(docs, kind, component)
    check(len(found) == 1, f"expected one {kind} for {component}, found {len(found)}")
    return found[0] if found else None


def check_security(doc):
    """Every container: non-root, read-only root filesystem, no privilege escalation, all
    capabilities dropped, RuntimeDefault seccomp (pod or container level)."""
    spec = pod_spec(doc)
    psc = spec.get("securityContext", {})
    containers = spec.get("initContainers", []) + spec.get("containers", [])
    check(containers, f"{name_of(doc)}: no containers")
    for c in containers:
        where = f"{name_of(doc)} container {c['name']}"
        sc = c.get("securityContext", {})
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        check(non_root is True, f"{where}: runAsNonRoot is not true")
        check(uid is None or uid != 0, f"{where}: runAsUser is 0")
        check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem is not true")
        check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false")
        check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: capabilities do not drop ALL")
        check(not sc.get("capabilities", {}).get("add"), f"{where}: adds capabilities")
        check(not sc.get("privileged"), f"{where}: privileged")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        check(seccomp == "RuntimeDefault", f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        check(c.get("resources", {}).get("limits", {}).get("memory"), f"{where}: no memory limit")
    check(spec.get("automountServiceAccountToken") is False, f"{name_of(doc)}: service account token mounted")


def check_workload_api(doc):
    """SPIFFE_ENDPOINT_SOCKET points into a read-only volume of the SPIFFE CSI driver."""
    spec = pod_spec(doc)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in spec.get("containers", []):
        where = f"{name_of(doc)} container {c['name']}"
        sock = env_value(c, "SPIFFE_ENDPOINT_SOCKET")
        if not check(sock, f"{where}: no SPIFFE_ENDPOINT_SOCKET"):
            continue
        if not check(sock.startswith("unix:///"), f"{where}: SPIFFE_ENDPOINT_SOCKET {sock!r} is not unix:///..."):
            continue
        sock_dir = os.path.dirname(sock[len("unix://"):])
        mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"].rstrip("/") == sock_dir]
        if not check(len(mounts) == 1, f"{where}: nothing mounted at {sock_dir} (SPIFFE_ENDPOINT_SOCKET {sock})"):
            continue
        m = mounts[0]
        check(m.get("readOnly") is True, f"{where}: Workload API mount is not readOnly")
        vol = volumes.get(m["name"], {})
        check(vol.get("csi", {}).get("driver") == CSI_DRIVER,
              f"{where}: volume {m['name']} at {sock_dir} is not a {CSI_DRIVER} CSI volume")
        check(vol.get("csi", {}).get("readOnly") is True, f"{where}: CSI volume is not readOnly")


def keeper_urls(docs):
    """The Keeper URLs the rendered Keeper StatefulSet and its headless Service give, pod 0
    first."""
    sts = one(docs, "StatefulSet", "keeper")
    if sts is None:
        return []
    svc_name = sts["spec"]["serviceName"]
    svcs = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == svc_name]
    if check(len(svcs) == 1, f"Keeper StatefulSet's serviceName {svc_name} is not rendered"):
        svc = svcs[0]
        check(svc["spec"].get("clusterIP") == "None", f"Service/{svc_name} is not headless")
        check(svc["spec"].get("publishNotReadyAddresses") is True,
              f"Service/{svc_name} does not publish not-ready Keepers")
        selector = svc["spec"].get("selector", {})
        labels = pod_labels(sts)
        check(selector and all(labels.get(k) == v for k, v in selector.items()),
              f"Service/{svc_name} does not select the Keeper pods")
    c = pod_spec(sts)["containers"][0]
    port = int(env_value(c, "SPIKE_KEEPER_TLS_PORT").lstrip(":"))
    check(any(p["containerPort"] == port for p in c.get("ports", [])),
          "SPIKE_KEEPER_TLS_PORT is not a container port")
    ns = sts["metadata"]["namespace"]
    name = sts["metadata"]["name"]
    return [
        f"https://{name}-{i}.{svc_name}.{ns}.svc.cluster.local:{port}"
        for i in range(int(sts["spec"]["replicas"]))
    ]


def check_keeper_pdb(docs):
    pdbs = by_component(docs, "PodDisruptionBudget", "keeper")
    sts = by_component(docs, "StatefulSet", "keeper")
    if check(len(pdbs) == 1 and len(sts) == 1, "expected one Keeper PodDisruptionBudget"):
        sel = pdbs[0]["spec"]["selector"]["matchLabels"]
        check(all(pod_labels(sts[0]).get(k) == v for k, v in sel.items()),
              "the Keeper PodDisruptionBudget does not select the Keeper pods")
        check(pdbs[0]["spec"].get("maxUnavailable") == 1, "the Keeper PodDisruptionBudget allows more than 1")


def check_peers(container, where, expected):
    peers = env_value(container, "SPIKE_NEXUS_KEEPER_PEERS")
    if not check(peers, f"{where}: no SPIKE_NEXUS_KEEPER_PEERS"):
        return
    got = peers.split(",")
    check(got == expected, f"{where}: SPIKE_NEXUS_KEEPER_PEERS is {got}, expected every Keeper in order: {expected}")
    shares = env_value(container, "SPIKE_NEXUS_SHAMIR_SHARES")
    check(shares == str(len(got)), f"{where}: SPIKE_NEXUS_SHAMIR_SHARES={shares} but {len(got)} Keepers")


def check_nexus(docs, variant, expected_peers):
    sts = one(docs, "StatefulSet", "nexus")
    if sts is None:
        return
    spec = pod_spec(sts)
    c = spec["containers"][0]
    where = name_of(sts)
    store = env_value(c, "SPIKE_NEXUS_BACKEND_STORE")
    data_dir = env_value(c, "SPIKE_NEXUS_DATA_DIR")
    check(data_dir, f"{where}: no SPIKE_NEXUS_DATA_DIR")
    data_mounts = [m for m in c.get("volumeMounts", [])
                   if data_dir and (data_dir + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    check(len(data_mounts) == 1, f"{where}: SPIKE_NEXUS_DATA_DIR {data_dir} is not on a volume")
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    if variant == "postgres":
        check(store == "postgres", f"{where}: SPIKE_NEXUS_BACKEND_STORE={store}, expected postgres")
        dsn = env_of(c).get("SPIKE_NEXUS_POSTGRES_DSN", {})
        check("secretKeyRef" in dsn.get("valueFrom", {}), f"{where}: SPIKE_NEXUS_POSTGRES_DSN is not read from a Secret")
        check("value" not in dsn, f"{where}: SPIKE_NEXUS_POSTGRES_DSN has a literal value")
        ca = env_value(c, "SPIKE_NEXUS_POSTGRES_CA_FILE")
        check(ca and any(ca.startswith(m["mountPath"] + "/") for m in c["volumeMounts"]),
              f"{where}: SPIKE_NEXUS_POSTGRES_CA_FILE {ca} is not on a mounted volume")
        check(int(sts["spec"]["replicas"]) > 1, f"{where}: the postgres variant should run several replicas")
        check(not claims, f"{where}: postgres needs no volumeClaimTemplates")
    else:
        check(store == "sled", f"{where}: SPIKE_NEXUS_BACKEND_STORE={store}, expected sled")
        check(int(sts["spec"]["replicas"]) == 1, f"{where}: sled runs exactly one replica")
        if data_mounts:
            check(data_mounts[0]["name"] in claims,
                  f"{where}: the sled data dir's volume {data_mounts[0]['name']} is not a volumeClaimTemplate ({claims})")
        check("sqlite" not in json.dumps(sts), f"{where}: mentions sqlite")
    port = env_value(c, "SPIKE_NEXUS_TLS_PORT")
    check(port and any(f":{p['containerPort']}" == port and p["name"] == "https" for p in c.get("ports", [])),
          f"{where}: SPIKE_NEXUS_TLS_PORT={port} is not the container's https port")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = c.get(probe)
        if check(p, f"{where}: no {probe}"):
            check("tcpSocket" in p and "httpGet" not in p and "exec" not in p,
                  f"{where}: {probe} is not a tcpSocket probe (Nexus health endpoints are mTLS-only)")
    check_peers(c, where, expected_peers)
    svcs = by_component(docs, "Service", "nexus")
    clusterip = [s for s in svcs if s["spec"].get("clusterIP") != "None"]
    if check(len(clusterip) == 1, "expected one Nexus ClusterIP Service"):
        s = clusterip[0]
        check(all(pod_labels(sts).get(k) == v for k, v in s["spec"]["selector"].items()),
              "the Nexus Service does not select the Nexus pods")
        check(s["spec"]["ports"][0]["targetPort"] == "https", "the Nexus Service does not target the https port")
    check(any(s["metadata"]["name"] == sts["spec"]["serviceName"] for s in svcs),
          f"{where}: governing Service {sts['spec']['serviceName']} is not rendered")


def check_bootstrap(docs, expected_peers):
    job = one(docs, "Job", "bootstrap")
    if job is None:
        return
    c = pod_spec(job)["containers"][0]
    where = name_of(job)
    argv = c.get("command", []) + c.get("args", [])
    check("-init" in argv, f"{where}: does not pass -init (argv {argv})")
    check(pod_spec(job).get("restartPolicy") in ("Never", "OnFailure"), f"{where}: restartPolicy")
    check_peers(c, where, expected_peers)
    url = env_value(c, "SPIKE_NEXUS_API_URL") or ""
    svc = [s for s in by_component(docs, "Service", "nexus") if s["spec"].get("clusterIP") != "None"]
    if svc:
        s = svc[0]
        check(url == f"https://{s['metadata']['name']}.{s['metadata']['namespace']}.svc.cluster.local:{s['spec']['ports'][0]['port']}",
              f"{where}: SPIKE_NEXUS_API_URL {url!r} is not the Nexus Service")
    hooks = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    check("post-install" in hooks and "post-upgrade" in hooks, f"{where}: not a post-install/post-upgrade hook")


def check_trust(docs, trust_domain):
    for d in docs:
        if d["kind"] not in WORKLOAD_KINDS:
            continue
        for c in pod_spec(d)["containers"]:
            for name, e in env_of(c).items():
                if name.startswith("SPIKE_TRUST_ROOT"):
                    v = e.get("value", "")
                    check(trust_domain in v.split(","), f"{name_of(d)}: {name}={v!r} lacks {trust_domain}")


def check_identities(docs, variant):
    ids = [d for d in docs if d["kind"] == "ClusterSPIFFEID"]
    if variant != "identities":
        check(not ids, "ClusterSPIFFEIDs rendered although clusterSPIFFEID.enabled is false")
        return
    check(len(ids) == 3, f"expected 3 ClusterSPIFFEIDs, found {len(ids)}")
    for d in ids:
        comp = d["metadata"]["labels"].get("app.kubernetes.io/component")
        where = name_of(d)
        tmpl = d["spec"].get("spiffeIDTemplate", "")
        check(tmpl == f"spiffe://{{{{ .TrustDomain }}}}/spike/{comp}/{{{{ .PodMeta.Name }}}}",
              f"{where}: spiffeIDTemplate {tmpl!r} is not SPIKE's {comp} ID with a pod suffix")
        check(d["spec"].get("className") == "spire-server-spire", f"{where}: className")
        check("namespace" not in d["metadata"], f"{where}: cluster-scoped resource has a namespace")
        selector = d["spec"]["podSelector"]["matchLabels"]
        targets = [w for w in docs if w["kind"] in WORKLOAD_KINDS
                   and all(pod_labels(w).get(k) == v for k, v in selector.items())]
        check(len(targets) == 1 and targets[0]["metadata"]["labels"]["app.kubernetes.io/component"] == comp,
              f"{where}: podSelector matches {[name_of(t) for t in targets]}, expected the {comp} pods")


def check_names(docs):
    seen = set()
    for d in docs:
        key = (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
        check(key not in seen, f"duplicate object {key}")
        seen.add(key)
        name = d["metadata"]["name"]
        check(re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), f"{name_of(d)}: invalid name")
        if d["kind"] in ("Service", "StatefulSet"):
            check(len(name) <= 63, f"{name_of(d)}: name longer than 63")
        if d["kind"] != "ClusterSPIFFEID":
            check(d["metadata"].get("namespace"), f"{name_of(d)}: no namespace")
        check(d["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "Helm",
              f"{name_of(d)}: no standard labels")


def main():
    ap = argparse.ArgumentParser()
    # spike-values: SPIKE-style values (ci/spike-values.yaml), checked like sled.
    ap.add_argument("--variant", choices=["sled", "postgres", "identities", "spike-values"], required=True)
    ap.add_argument("--trust-domain", default="example.org")
    ap.add_argument("rendered", help="JSON array of the rendered documents (yaml2json)")
    a = ap.parse_args()
    with open(a.rendered) as f:
        docs = json.load(f)
    check(docs, "nothing rendered")

    kinds = sorted({d["kind"] for d in docs})
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    for d in workloads:
        check_security(d)
        check_workload_api(d)
    expected = keeper_urls(docs)
    check_nexus(docs, "postgres" if a.variant == "postgres" else "sled", expected)
    check_bootstrap(docs, expected)
    check_keeper_pdb(docs)
    check_trust(docs, a.trust_domain)
    check_identities(docs, a.variant)
    check_names(docs)

    if errors:
        for e in errors:
            print(f"FAIL [{a.variant}] {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ok [{a.variant}]: {len(docs)} objects ({', '.join(kinds)}), "
          f"{len(workloads)} workloads, {len(expected)} Keepers in order")


if __name__ == "__main__":
    main()
