"""Tests of the Helm chart (charts/argocd-cdevents) and the plain manifests (deploy/).

The chart is rendered by Helm itself: the PyPI package helm-python-sdk binds Helm's Go SDK
(libhelm_c, Helm v4) with ctypes, so values.schema.json, `required`/`fail` and the template
functions behave exactly as in `helm install`. Every rendered object, and every object of
the kustomizations under deploy/, is validated with kubernetes-validate against the newest
Kubernetes version it ships, in strict mode (unknown fields are errors).

Exception, said here once: ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1) are
CRD kinds kubernetes-validate has no schema for. For those two kinds only, the tests check
apiVersion, kind and metadata.name and skip schema validation; any other kind without a
schema fails the test.

Everything runs offline: no cluster and no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

import kustomize_build

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "argocd-cdevents"
DEPLOY = ROOT / "deploy"
VALUES = Path(__file__).resolve().parent / "values"
RELEASE = "argocd-cdevents"
NAMESPACE = "argocd"

KUBERNETES_VERSION = latest_version()
CRD_KINDS_WITHOUT_SCHEMA = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

# The metric names the gateway exposes (the contract between the Rust code, the dashboard
# and the alerts).
METRICS = {
    "argocd_cdevents_events_received_total",
    "argocd_cdevents_events_rejected_total",
    "argocd_cdevents_events_deduplicated_total",
    "argocd_cdevents_decisions_total",
    "argocd_cdevents_argocd_requests_total",
    "argocd_cdevents_argocd_request_duration_seconds",
    "argocd_cdevents_emitted_total",
    "argocd_cdevents_outbox_pending",
    "argocd_cdevents_deliveries_total",
    "argocd_cdevents_delivery_duration_seconds",
    "argocd_cdevents_dead_letters",
    "argocd_cdevents_watch_restarts_total",
    "argocd_cdevents_policy_reloads_total",
    "argocd_cdevents_policy_reload_success",
    "argocd_cdevents_policies_loaded",
    "argocd_cdevents_leader",
}
HISTOGRAMS = {"argocd_cdevents_argocd_request_duration_seconds", "argocd_cdevents_delivery_duration_seconds"}

VALUE_SETS = ["default", "ha-postgres", "kubernetes-backend", "all-optional-on", "tls"]

# Where the chart mounts the policy files; config.react.policies defaults to it.
POLICIES_DIR = "/etc/argocd-cdevents/policies"
# Where the chart mounts tls.existingSecret and (when it is another Secret) tls.clientCa.existingSecret.
TLS_DIR = "/etc/argocd-cdevents/tls"
CLIENT_CA_DIR = "/etc/argocd-cdevents/tls-client-ca"
# The repository's example policies (policies/*.yaml), as policies.files would hold them.
SHIPPED_POLICIES = {p.name: p.read_text() for p in sorted((ROOT / "policies").glob("*.yaml"))}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def chart():
    loaded = helm.Chart.load(CHART)
    yield loaded
    loaded.close()


def load_values(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    return yaml.safe_load((VALUES / f"{name}.yaml").read_text()) or {}


def render(chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Render like `helm install argocd-cdevents charts/argocd-cdevents -n argocd`."""
    manifests = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def validate_object(obj: dict[str, Any]) -> None:
    """Validate one object against the Kubernetes OpenAPI schema (strict).

    Raises kubernetes_validate's ValidationError (or SchemaNotFoundError for an unknown kind).
    """
    if (obj.get("apiVersion"), obj.get("kind")) in CRD_KINDS_WITHOUT_SCHEMA:
        # No schema for these CRD kinds: check the identity fields only (see module doc).
        assert obj["metadata"]["name"], f"{obj['kind']} without metadata.name"
        assert isinstance(obj.get("spec"), dict), f"{obj['kind']} without spec"
        return
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def validate_all(objects: list[dict[str, Any]]) -> None:
    seen = set()
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata", {})
        try:
            validate_object(obj)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            pytest.fail(f"{kind}/{meta.get('name')} is invalid at {path}: {err.message}")
        key = (kind, meta.get("namespace"), meta["name"])
        assert key not in seen, f"duplicate object {key}"
        seen.add(key)


def find(objects, kind: str, name: str | None = None, namespace: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects, kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def application_rules(objects) -> list[tuple[str, str | None, list[str]]]:
    """(kind, namespace, verbs) of every rule on applications.argoproj.io."""
    rules = []
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        for rule in role.get("rules", []):
            if "argoproj.io" in rule.get("apiGroups", []) and "applications" in rule.get("resources", []):
                rules.append((role["kind"], role["metadata"].get("namespace"), rule["verbs"]))
    return rules


def lease_rules(objects) -> list[dict]:
    return [
        rule
        for role in find(objects, "Role") + find(objects, "ClusterRole")
        for rule in role.get("rules", [])
        if "coordination.k8s.io" in rule.get("apiGroups", [])
    ]


def container(objects) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(objects) -> dict[str, dict]:
    return {e["name"]: e for e in container(objects).get("env", [])}


def mounts(objects) -> dict[str, dict]:
    return {m["mountPath"]: m for m in container(objects)["volumeMounts"]}


def rendered_config(objects) -> dict:
    return yaml.safe_load(one(objects, "ConfigMap", RELEASE)["data"]["config.yaml"])


def render_error(chart, values) -> str:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(caught.value)


# --------------------------------------------------------------------------- the validator


def test_validator_rejects_a_deployment_with_a_wrong_field_type():
    """The validation used everywhere below does reject invalid objects."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken"},
        "spec": {
            "replicas": "three",  # must be an integer
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "x", "image": "x"}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        validate_object(deployment)
    assert list(caught.value.path) == ["spec", "replicas"]

    deployment["spec"]["replicas"] = 1
    validate_object(deployment)  # the same object with the right type passes

    # strict: an unknown (misspelt) field is an error too
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(deployment)


def test_validator_refuses_unknown_kinds_and_checks_crd_kinds():
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_object({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    with pytest.raises((AssertionError, KeyError)):
        validate_object({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {}})


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_value_set_renders_valid_objects(chart, value_set):
    values = load_values(value_set)
    chart.validate_schema(values)
    objects = render(chart, values)
    assert objects
    validate_all(objects)
    for obj in objects:
        if obj["kind"] not in kustomize_build.CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace"), f"{obj['kind']} without namespace"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pod_is_locked_down(chart, value_set):
    objects = render(chart, load_values(value_set))
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "/tmp" in mounts(objects)
    tmp = next(v for v in pod["volumes"] if v["name"] == mounts(objects)["/tmp"]["name"])
    assert "emptyDir" in tmp
    assert c["args"][:3] == ["serve", "--config", "/etc/argocd-cdevents/config.yaml"]
    assert mounts(objects)["/etc/argocd-cdevents/config.yaml"]["subPath"] == "config.yaml"
    https = "tls" in rendered_config(objects)
    port = "https" if https else "http"
    scheme = {"scheme": "HTTPS"} if https else {}
    assert c["ports"] == [{"name": port, "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port, **scheme}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port, **scheme}
    # Secrets (certificates included) are mounted read-only, whole: never a subPath, so
    # renewed certificates reach the pod.
    for m in container(objects)["volumeMounts"]:
        if m["mountPath"] != "/etc/argocd-cdevents/config.yaml":
            assert "subPath" not in m, m
    assert c["resources"]["limits"]["memory"]


def test_defaults(chart):
    objects = render(chart, {})
    # watch Applications in all namespaces: a ClusterRole that can read, not write
    assert application_rules(objects) == [("ClusterRole", None, ["get", "list", "watch"])]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
    assert not lease_rules(objects)
    # one replica, SQLite on a PVC mounted where the store URL points
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pvc = one(objects, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    data = mounts(objects)["/var/lib/argocd-cdevents"]
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == data["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    config = rendered_config(objects)
    assert config["store"] == "sqlite:///var/lib/argocd-cdevents/gateway.db"
    assert config["emit"]["watch"]["kind"] == "kubernetes"
    assert config["emit"]["specVersion"] == "0.5.1"
    # nothing optional
    for kind in ("Ingress", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "NetworkPolicy"):
        assert not find(objects, kind), kind
    assert set(env(objects)) == {"POD_NAME", "POD_NAMESPACE"}
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is True
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert "appProtocol" not in service["spec"]["ports"][0]
    # plain HTTP unless tls is enabled: no tls key, no certificate volume
    assert "tls" not in config
    assert not [m for m in mounts(objects) if m.startswith(TLS_DIR)]


def test_config_keys_match_the_binary_config_file(chart):
    """The chart's default config.yaml uses only keys of the binary's own config/local.yaml,
    and sets every key that file sets at the top level and under emit, delivery and log.
    (`react` is the exception: the chart leaves it to the user until it has defaults.)"""
    local = yaml.safe_load((ROOT / "config" / "local.yaml").read_text())
    config = rendered_config(render(chart, {}))
    assert set(config) <= set(local)
    assert set(local) - set(config) <= {"react"}
    for section in ("emit", "delivery", "log"):
        assert set(config[section]) == set(local[section]), section
    assert set(config["emit"]["watch"]) <= {"kind", "kubernetes", "argocd"}


def test_kubernetes_backend_grants_patch_on_applications(chart):
    objects = render(chart, load_values("kubernetes-backend"))
    rules = application_rules(objects)
    assert len(rules) == 1
    kind, _, verbs = rules[0]
    assert kind == "ClusterRole"
    assert "patch" in verbs
    assert {"create", "delete", "update"}.isdisjoint(verbs)
    # policies rendered into a ConfigMap mounted at the policies directory
    policies = one(objects, "ConfigMap", f"{RELEASE}-policies")
    assert sorted(policies["data"]) == ["rollback-on-incident.yaml", "sync-on-artifact.yaml"]
    for name, text in policies["data"].items():
        assert yaml.safe_load(text)["name"] == name.removesuffix(".yaml")
        # the policy text is passed through as written: `on:` stays `on:`
        assert re.search(r"^on:$", text, re.M), text
    assert mounts(objects)["/etc/argocd-cdevents/policies"]["readOnly"] is True
    assert mounts(objects)["/etc/argocd-cdevents/clients"]["readOnly"] is True
    clients = next(
        v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "clients"
    )
    assert clients["secret"]["secretName"] == "argocd-cdevents-clients"


def test_react_config_is_completed_by_the_chart(chart):
    """config.react without `policies` and `argocd.backend`: the chart sets the mounted policy
    directory and argocd.backend, so the gateway (which requires `policies`) starts."""
    objects = render(chart, load_values("kubernetes-backend"))
    react = rendered_config(objects)["react"]
    assert react["policies"] == POLICIES_DIR
    assert react["argocd"] == {"backend": "kubernetes"}
    assert [c["name"] for c in react["clients"]] == ["monitoring", "ci"]
    assert mounts(objects)[POLICIES_DIR]["readOnly"] is True
    # a backend set by hand that agrees is kept, and nothing else is added
    values = load_values("kubernetes-backend")
    values["config"]["react"]["argocd"] = {"backend": "kubernetes", "namespace": "apps"}
    react = rendered_config(render(chart, values))["react"]
    assert react["argocd"] == {"backend": "kubernetes", "namespace": "apps"}
    # without config.react the react flow stays off: nothing is added
    assert "react" not in rendered_config(render(chart, {"policies": {"existingConfigMap": "p"}}))


def test_shipped_policies_install_as_files(chart):
    """The repository's policies/ examples go into policies.files unchanged (`on:` stays
    `on:`), with the REST backend, and config.react.policies points at where they are mounted."""
    values = {
        "argocd": {"server": "argocd-server.argocd.svc:443", "existingSecret": "argocd-cdevents-argocd-token"},
        "clients": {"existingSecret": "argocd-cdevents-clients"},
        "config": {
            "react": {
                "clients": [
                    {
                        "name": "ci",
                        "bearer": {"tokenFile": "/etc/argocd-cdevents/clients/ci-token"},
                        "sources": ["/ci/github-actions/acme/*"],
                        "types": ["dev.cdevents.artifact.packaged"],
                    }
                ]
            }
        },
        "policies": {"files": dict(SHIPPED_POLICIES)},
    }
    chart.validate_schema(values)
    objects = render(chart, values)
    validate_all(objects)
    data = one(objects, "ConfigMap", f"{RELEASE}-policies")["data"]
    assert sorted(data) == sorted(SHIPPED_POLICIES)
    for name, text in SHIPPED_POLICIES.items():
        assert data[name].rstrip("\n") == text.rstrip("\n"), name
    react = rendered_config(objects)["react"]
    assert react["policies"] == POLICIES_DIR
    assert react["argocd"] == {"backend": "rest"}
    assert env(objects)["ARGOCD_SERVER"]["value"] == "argocd-server.argocd.svc:443"
    assert "ARGOCD_AUTH_TOKEN" in env(objects)


def gateway_binary() -> Path | None:
    """The gateway binary (`cargo test` builds target/debug), or ARGOCD_CDEVENTS_BIN."""
    if os.environ.get("ARGOCD_CDEVENTS_BIN"):
        return Path(os.environ["ARGOCD_CDEVENTS_BIN"])
    built = [ROOT / "target" / kind / "argocd-cdevents" for kind in ("debug", "release")]
    built = [b for b in built if b.is_file() and os.access(b, os.X_OK)]
    return max(built, key=lambda b: b.stat().st_mtime) if built else None


def openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"


def write_tls_secrets(tls: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    """What the kubelet would mount for the chart's tls values: a server certificate and key
    (tls.crt, tls.key) and a CA bundle (ca.crt), made with the openssl CLI, in a temporary
    directory per mount point. Returns {mount dir: temporary dir}."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not on PATH")
    work = tmp_path / "pki"
    work.mkdir(exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca", cwd=work)
    openssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=argocd-cdevents", cwd=work)
    (work / "ext").write_text("subjectAltName=DNS:argocd-cdevents.argocd.svc\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "tls.crt", "-days", "2", "-extfile", "ext", cwd=work)
    mounted = {}
    for mount, files in ((TLS_DIR, ("tls.crt", "tls.key", "ca.crt")), (CLIENT_CA_DIR, ("ca.crt",))):
        directory = tmp_path / Path(mount).name
        directory.mkdir(exist_ok=True)
        for name in files:
            shutil.copy(work / name, directory / name)
        mounted[mount] = directory
    ca_file = tls.get("clientCaFile")
    if ca_file and Path(ca_file).name != "ca.crt":  # tls.clientCa.key other than ca.crt
        for directory in mounted.values():
            shutil.copy(work / "ca.crt", directory / Path(ca_file).name)
    return mounted


def gateway_check(config_text: str, tmp_path: Path, policies: dict[str, str] | None = None, cwd: Path = ROOT):
    """`argocd-cdevents check` on a config file (policies mounted at POLICIES_DIR, and the TLS
    Secrets mounted at TLS_DIR and CLIENT_CA_DIR, are written to a temporary directory first).
    Secrets are not read by `check`, Argo CD is not called; certificate files are loaded."""
    binary = gateway_binary()
    if binary is None:
        pytest.skip("no gateway binary: run cargo build (or set ARGOCD_CDEVENTS_BIN)")
    tls = (yaml.safe_load(config_text) or {}).get("tls")
    if tls is not None:
        for mount, directory in write_tls_secrets(tls, tmp_path).items():
            config_text = config_text.replace(f"{mount}/", f"{directory}/")
        rewritten = yaml.safe_load(config_text)["tls"]
        for key in ("certFile", "keyFile", "clientCaFile"):
            if key in tls:
                assert Path(rewritten[key]).is_file(), f"tls.{key}: {tls[key]} is not in a mounted Secret"
    if policies is not None:
        directory = tmp_path / "policies"
        directory.mkdir(exist_ok=True)
        for name, text in policies.items():
            (directory / name).write_text(text)
        assert f"policies: {POLICIES_DIR}" in config_text
        config_text = config_text.replace(f"policies: {POLICIES_DIR}", f"policies: {directory}")
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGOCD_", "K_SINK"))}
    result = subprocess.run(
        [str(binary), "check", "--config", str(path)],
        cwd=cwd, env=clean_env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"{config_text}\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS + ["shipped-policies"])
def test_rendered_config_is_accepted_by_the_gateway(chart, value_set, tmp_path):
    """The config.yaml the chart renders passes the gateway's own `check` (unknown keys, URLs,
    durations, react clients and the policies it mounts)."""
    if value_set == "shipped-policies":
        values = {
            "argocd": {"server": "argocd-server.argocd.svc:443", "existingSecret": "t"},
            "config": {"react": {}},
            "policies": {"files": dict(SHIPPED_POLICIES)},
        }
    else:
        values = load_values(value_set)
    objects = render(chart, values)
    text = one(objects, "ConfigMap", RELEASE)["data"]["config.yaml"]
    policies = find(objects, "ConfigMap", f"{RELEASE}-policies")
    mounted = policies[0]["data"] if policies and "react" in rendered_config(objects) else None
    out = gateway_check(text, tmp_path, mounted)
    if mounted:
        assert re.search(r"configuration is valid; [1-9][0-9]* policies in \S+ compile", out), out


def test_shipped_config_files_are_accepted_by_the_gateway(tmp_path):
    """config/*.yaml and deploy/base's config.yaml pass `check` (react-example.yaml with the
    repository's policies/ directory)."""
    for path in sorted((ROOT / "config").glob("*.yaml")):
        gateway_check(path.read_text(), tmp_path)
    (base,) = [o for o in yaml.safe_load_all((DEPLOY / "base" / "configmap.yaml").read_text()) if o]
    gateway_check(base["data"]["config.yaml"], tmp_path)


def test_tls_switches_the_pod_service_and_scrape_to_https(chart):
    """tls.enabled: the Secrets are mounted read-only as directories, config.tls names the
    mounted files, and everything that talks to the port (probes, Service, Ingress,
    NetworkPolicy, ServiceMonitor) speaks HTTPS to it."""
    objects = render(chart, load_values("tls"))
    assert rendered_config(objects)["tls"] == {
        "certFile": f"{TLS_DIR}/tls.crt",
        "keyFile": f"{TLS_DIR}/tls.key",
        "clientCaFile": f"{CLIENT_CA_DIR}/ca.crt",
        "requireClientCertificate": True,
        "reloadInterval": "1m",
    }
    assert rendered_config(objects)["http"] == {"headerReadTimeout": "5s", "bodyReadTimeout": "20s"}
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    for mount, secret in ((TLS_DIR, "argocd-cdevents-tls"), (CLIENT_CA_DIR, "argocd-cdevents-client-ca")):
        m = mounts(objects)[mount]
        assert m["readOnly"] is True and "subPath" not in m
        assert volumes[m["name"]]["secret"] == {"secretName": secret, "defaultMode": 0o440}
    c = container(objects)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS" and c[probe]["httpGet"]["port"] == "https", probe
    (port,) = one(objects, "Service")["spec"]["ports"]
    assert (port["name"], port["targetPort"], port["appProtocol"]) == ("https", "https", "https")
    backend = one(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["port"] == {"name": "https"}
    assert one(objects, "NetworkPolicy")["spec"]["ingress"][0]["ports"] == [{"port": "https", "protocol": "TCP"}]
    (endpoint,) = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"]) == ("https", "https")
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}

    # a verifying scrape, when asked for
    values = load_values("tls")
    values["serviceMonitor"]["tlsConfig"] = {
        "ca": {"secret": {"name": "argocd-cdevents-tls", "key": "ca.crt"}},
        "serverName": "argocd-cdevents.argocd.svc",
    }
    (endpoint,) = one(render(chart, values), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["tlsConfig"] == values["serviceMonitor"]["tlsConfig"]

    # the client CA from the server's own Secret (cert-manager's ca.crt): one volume, no other
    values = load_values("tls")
    values["tls"]["clientCa"] = {"existingSecret": "argocd-cdevents-tls"}
    objects = render(chart, values)
    validate_all(objects)
    assert rendered_config(objects)["tls"]["clientCaFile"] == f"{TLS_DIR}/ca.crt"
    assert CLIENT_CA_DIR not in mounts(objects)
    assert [v["name"] for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]].count("tls") == 1

    # HTTPS without client certificates: no clientCaFile, nothing required
    objects = render(chart, {"tls": {"enabled": True, "existingSecret": "s"}})
    validate_all(objects)
    assert rendered_config(objects)["tls"] == {
        "certFile": f"{TLS_DIR}/tls.crt",
        "keyFile": f"{TLS_DIR}/tls.key",
        "reloadInterval": "30s",
    }


def test_tls_of_your_own_in_config_switches_to_https_too(chart, tmp_path):
    """config.tls with files mounted through extraVolumes: the chart mounts nothing itself, but
    the probes and the Service still speak HTTPS; the config passes the gateway's check."""
    values = {
        "config": {"tls": {"certFile": "/etc/argocd-cdevents/tls/tls.crt", "keyFile": "/etc/argocd-cdevents/tls/tls.key"}},
        "extraVolumes": [{"name": "certs", "csi": {"driver": "csi.cert-manager.io", "readOnly": True}}],
        "extraVolumeMounts": [{"name": "certs", "mountPath": TLS_DIR, "readOnly": True}],
    }
    chart.validate_schema(values)
    objects = render(chart, values)
    validate_all(objects)
    assert container(objects)["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert one(objects, "Service")["spec"]["ports"][0]["appProtocol"] == "https"
    assert mounts(objects)[TLS_DIR]["name"] == "certs"
    gateway_check(one(objects, "ConfigMap", RELEASE)["data"]["config.yaml"], tmp_path)


def test_turning_tls_on_rolls_the_pods(chart):
    def checksum(values):
        return one(render(chart, values), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum({"tls": {"enabled": True, "existingSecret": "s"}})


def test_broken_tls_value_set_is_refused_by_the_chart(chart):
    values = load_values("broken-tls-without-secret")
    chart.validate_schema(values)  # the schema allows it; the template refuses it
    message = render_error(chart, values)
    assert "tls.enabled is true but tls.existingSecret is empty" in message
    assert "kubernetes.io/tls Secret holding tls.crt and tls.key" in message


def test_preview_environments_add_create_and_delete(chart):
    values = load_values("kubernetes-backend")
    values["argocd"]["previewEnvironments"] = True
    (_, _, verbs), = application_rules(render(chart, values))
    assert {"patch", "create", "delete"} <= set(verbs)


def test_rest_backend_never_writes_applications(chart):
    for value_set in ("default", "ha-postgres", "all-optional-on"):
        for _, _, verbs in application_rules(render(chart, load_values(value_set))):
            assert set(verbs) <= {"get", "list", "watch"}, value_set


def test_ha_postgres(chart):
    objects = render(chart, load_values("ha-postgres"))
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    # PostgreSQL from the Secret, no PVC and no data volume
    assert env(objects)["ARGOCD_CDEVENTS_STORE"]["valueFrom"] == {
        "secretKeyRef": {"name": "argocd-cdevents-db", "key": "url"}
    }
    assert not find(objects, "PersistentVolumeClaim")
    assert "/var/lib/argocd-cdevents" not in mounts(objects)
    # leader election: the config names the Lease, in the release namespace
    assert rendered_config(objects)["leaderElection"] == {"namespace": NAMESPACE, "lease": f"{RELEASE}-leader"}
    # exactly what kube-lease-manager does: GET and PATCH (apply, strategic merge) on that
    # Lease, POST to create it; no update, list, watch or delete
    assert sorted((r["verbs"], r.get("resourceNames")) for r in lease_rules(objects)) == [
        (["create"], None),
        (["get", "patch"], [f"{RELEASE}-leader"]),
    ]
    assert all(r["resources"] == ["leases"] for r in lease_rules(objects))
    lease_role = one(objects, "Role", f"{RELEASE}-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    lease_binding = one(objects, "RoleBinding", f"{RELEASE}-leader-election")
    assert lease_binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    # namespaces listed: one Role per namespace, no ClusterRole
    assert sorted(application_rules(objects)) == [
        ("Role", "argocd", ["get", "list", "watch"]),
        ("Role", "team-a", ["get", "list", "watch"]),
    ]
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    for ns in ("argocd", "team-a"):
        binding = one(objects, "RoleBinding", f"{RELEASE}-applications", ns)
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_ha_leader_election_follows_the_values(chart, tmp_path):
    """Durations pass through, the Lease is named after the release (fullnameOverride too), the
    Role grants exactly that Lease, and the binary's `check` accepts the result."""
    values = {
        "replicaCount": 2,
        "fullnameOverride": "gw",
        "postgresql": {"existingSecret": "db"},
        "leaderElection": {"duration": "30s", "grace": "10s"},
    }
    objects = render(chart, values)
    text = one(objects, "ConfigMap", "gw")["data"]["config.yaml"]
    assert yaml.safe_load(text)["leaderElection"] == {
        "namespace": NAMESPACE, "lease": "gw-leader", "duration": "30s", "grace": "10s"
    }
    named = [r for r in lease_rules(objects) if r.get("resourceNames")]
    assert [r["resourceNames"] for r in named] == [["gw-leader"]]
    # the pod talks to the API server for the Lease even when nothing else needs it
    values["config"] = {"emit": {"watch": {"kind": "none"}}}
    objects = render(chart, values)
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is True
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert not application_rules(objects) and lease_rules(objects)
    gateway_check(one(objects, "ConfigMap", "gw")["data"]["config.yaml"], tmp_path)


@pytest.mark.parametrize("value_set", ["default", "kubernetes-backend", "all-optional-on", "tls"])
def test_one_replica_has_no_leader_election(chart, value_set):
    objects = render(chart, load_values(value_set))
    assert "leaderElection" not in rendered_config(objects)
    assert not lease_rules(objects)


def test_leader_election_values_are_checked(chart):
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema({"leaderElection": {"duration": "fifteen"}})
    assert "/leaderElection/duration" in str(caught.value)
    # the chart writes config.leaderElection; it is not a config key of its own
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema({"config": {"leaderElection": {"namespace": "argocd"}}})
    assert "'leaderElection' not allowed" in str(caught.value)


@pytest.mark.parametrize(
    "values, expected",
    [
        ({}, None),
        ({"podDisruptionBudget": {"enabled": True}}, 1),
        ({"replicaCount": 2, "postgresql": {"existingSecret": "db"}}, 1),
        ({"replicaCount": 2, "postgresql": {"existingSecret": "db"}, "podDisruptionBudget": {"enabled": False}}, None),
    ],
)
def test_pod_disruption_budget_comes_with_several_replicas(chart, values, expected):
    budgets = find(render(chart, values), "PodDisruptionBudget")
    assert [b["spec"]["maxUnavailable"] for b in budgets] == ([] if expected is None else [expected])


def test_argocd_stream_mode_needs_no_kubernetes_access(chart):
    objects = render(chart, load_values("all-optional-on"))
    assert not application_rules(objects) and not lease_rules(objects)
    assert not find(objects, "ClusterRole") and not find(objects, "Role")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    variables = env(objects)
    assert variables["ARGOCD_SERVER"]["value"] == "argocd-server.argocd.svc:443"
    assert variables["ARGOCD_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "argocd-cdevents-token",
        "key": "token",
    }
    assert variables["K_SINK"]["value"].startswith("http://broker-ingress")
    watch = rendered_config(objects)["emit"]["watch"]
    # argocd.server is host:port (as ARGOCD_SERVER takes it); the config file needs a URL
    assert watch["argocd"]["server"] == "https://argocd-server.argocd.svc:443"
    assert watch["argocd"]["tokenEnv"] == "ARGOCD_AUTH_TOKEN"
    assert watch["argocd"]["projects"] == ["default", "team-a"]
    # the Service port can differ from the container port
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == 80
    # the optional objects are there
    assert one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboard = one(objects, "ConfigMap", f"{RELEASE}-dashboard")
    assert json.loads(dashboard["data"]["argocd-cdevents.json"])["uid"] == "argocd-cdevents"
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert one(objects, "Ingress")["spec"]["rules"][0]["host"] == "cdevents.example.com"
    assert mounts(objects)["/etc/argocd-cdevents/policies"]
    assert not find(objects, "ConfigMap", f"{RELEASE}-policies")  # existingConfigMap used


def test_watch_none_has_no_rbac_and_no_token(chart):
    objects = render(chart, {"config": {"emit": {"watch": {"kind": "none"}}}})
    assert not find(objects, "ClusterRole") and not find(objects, "Role")
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_listen_port_drives_container_port(chart):
    objects = render(chart, {"config": {"listen": "[::]:9090"}})
    assert container(objects)["ports"][0]["containerPort"] == 9090
    validate_all(objects)


def test_config_change_rolls_the_pods(chart):
    def checksum(values):
        deployment = one(render(chart, values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) != checksum({"config": {"log": {"level": "debug"}}})


# --------------------------------------------------------------------------- refusals


def test_several_replicas_with_sqlite_fail_with_the_charts_message(chart):
    values = {"replicaCount": 2}
    chart.validate_schema(values)  # the schema allows it; the template refuses it
    message = render_error(chart, values)
    assert "replicaCount is 2 but the store is SQLite" in message
    assert "SQLite supports one replica only" in message
    assert "postgresql.existingSecret" in message
    # with PostgreSQL the same replica count renders
    render(chart, {"replicaCount": 2, "postgresql": {"existingSecret": "db"}})


@pytest.mark.parametrize(
    "broken, field, explanation",
    [
        ("broken-sink-mode", "/config/sinks/0/mode", "'binary', 'structured'"),
        ("broken-replica-count", "/replicaCount", "minimum"),
        ("broken-watch-kind", "/config/emit/watch/kind", "'none', 'kubernetes', 'argocd'"),
        ("broken-spec-version", "/config/emit/specVersion", "'0.5.1', '0.4.1'"),
        ("broken-unknown-key", "/config", "'sink' not allowed"),
        ("broken-react-kind", "/config/react/argocd", "'kind' not allowed"),
        ("broken-react-client", "/config/react/clients/0", "missing property 'types'"),
        ("broken-react-certificate", "/config/react/clients/0/certificate/dnsName", "does not match pattern"),
    ],
)
def test_schema_rejects_broken_values(chart, broken, field, explanation):
    values = load_values(broken)
    with pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(values)
    message = str(caught.value)
    assert f"at '{field}'" in message
    assert explanation in message
    # and `helm install` (rendering) refuses them the same way
    assert f"at '{field}'" in render_error(chart, values)


@pytest.mark.parametrize(
    "values, expected",
    [
        (
            {"config": {"emit": {"watch": {"kind": "argocd"}}}},
            "no Argo CD server is set: set argocd.server",
        ),
        (
            {"config": {"emit": {"watch": {"kind": "argocd"}}}, "argocd": {"server": "argocd-server:443"}},
            "no Argo CD token is given: set argocd.existingSecret",
        ),
        (
            {"config": {"react": {"argocd": {"backend": "kubernetes"}}}},
            'config.react.argocd.backend is "kubernetes" but argocd.backend is "rest"',
        ),
        # react.policies is required by the gateway: mounted by the chart, or given
        ({"config": {"react": {}}}, "config.react is set but there are no policies"),
        (
            {"config": {"react": {"policies": "/elsewhere"}}, "policies": {"existingConfigMap": "p"}},
            'config.react.policies is "/elsewhere" but the chart mounts the policies',
        ),
        (
            {"config": {"react": {}}, "policies": {"existingConfigMap": "p"}},
            "config.react is set with the rest backend but no Argo CD server is set",
        ),
        (
            {"config": {"react": {}}, "policies": {"existingConfigMap": "p"}, "argocd": {"server": "a:443"}},
            "config.react is set with the rest backend but no Argo CD token is given",
        ),
        (
            {"config": {"react": {"allowUnauthenticated": True}}, "policies": {"existingConfigMap": "p"}},
            "config.react.allowUnauthenticated is true but config.listen is",
        ),
        ({"argocd": {"previewEnvironments": True}}, "needs argocd.backend=kubernetes"),
        (
            {"policies": {"files": {"a.yaml": "name: a"}, "existingConfigMap": "p"}},
            "either policies.files or policies.existingConfigMap",
        ),
        ({"config": {"listen": "localhost"}}, "at '/config/listen'"),
        # a policy given as a map would lose its `on:` key to YAML 1.1 (it becomes `true`)
        (
            {"policies": {"files": {"p.yaml": {"name": "p", "on": {"types": ["x"]}}}}},
            "at '/policies/files/p.yaml': got object, want string",
        ),
        ({"policies": {"files": {"p.json": "name: p"}}}, "at '/policies/files': additional properties 'p.json'"),
        # HTTPS
        ({"tls": {"enabled": True}}, "tls.enabled is true but tls.existingSecret is empty"),
        (
            {"tls": {"enabled": True, "existingSecret": "s"}, "config": {"tls": {"certFile": "/c", "keyFile": "/k"}}},
            "tls.enabled is true and config.tls is set: use one",
        ),
        ({"tls": {"requireClientCertificate": True}}, "need tls.enabled"),
        ({"tls": {"clientCa": {"existingSecret": "ca"}}}, "need tls.enabled"),
        (
            {"tls": {"enabled": True, "existingSecret": "s", "requireClientCertificate": True}},
            "tls.requireClientCertificate is true but tls.clientCa.existingSecret is empty",
        ),
        (
            {
                "tls": {"enabled": True, "existingSecret": "s"},
                "config": {"react": {"clients": [
                    {"name": "deployer", "certificate": {"dnsName": "d.example.com"}, "sources": ["*"], "types": ["*"]}
                ]}},
                "policies": {"existingConfigMap": "p"},
                "argocd": {"server": "a:443", "existingSecret": "t"},
            },
            "config.react.clients[0] (deployer) authenticates by client certificate, but no client CA is set",
        ),
        (
            {"config": {"react": {"policies": "/p", "clients": [
                {"name": "d", "certificate": {"dnsName": "d.example.com"}, "bearer": {"tokenEnv": "X"},
                 "sources": ["*"], "types": ["*"]}
            ]}}},
            "at '/config/react/clients/0': 'oneOf' failed",
        ),
        ({"tls": {"enabled": "yes"}}, "at '/tls/enabled': got string, want boolean"),
        # a zero interval would have the gateway re-read the files without pause
        ({"tls": {"enabled": True, "existingSecret": "s", "reloadInterval": "0s"}}, "at '/tls/reloadInterval'"),
        ({"config": {"http": {"headerReadTimeout": "soon"}}}, "at '/config/http/headerReadTimeout'"),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(chart, values, expected):
    assert expected in render_error(chart, values)


# --------------------------------------------------------------------------- values docs


def test_values_yaml_documents_every_key():
    """A comment directly above every key of values.yaml.

    A comment starting with `# --` documents a whole value, so the keys inside it (the fields
    of a Kubernetes object given as an example) need none; any other comment documents a
    section whose keys each need their own.
    """
    missing = []
    stack: list[tuple[int, bool]] = []  # (indent, inside a documented value)
    comment_block: list[str] = []
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            comment_block = []
            continue
        if stripped.startswith("#"):
            comment_block.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z0-9_.\-/]+|\"[^\"]+\"):(\s|$)", line)
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            covered = any(inside for _, inside in stack)
            if not covered and not comment_block:
                missing.append(f"line {number}: {match.group(2)}")
            documents_value = bool(comment_block) and comment_block[0].startswith("# --")
            stack.append((indent, covered or documents_value))
        comment_block = []
    assert not missing, "keys without a comment above them:\n" + "\n".join(missing)


def test_schema_is_draft7_and_accepts_the_defaults():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_local_config_file_is_accepted_by_the_chart_schema(chart):
    """config/*.yaml (the binary's own examples, react-example.yaml included) pass the chart's
    `config` schema."""
    for path in sorted((ROOT / "config").glob("*.yaml")):
        chart.validate_schema({"config": yaml.safe_load(path.read_text())})


def test_chart_metadata(chart):
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == "0.1.0"
    report = helm.lint(CHART, strict=True)
    assert not report.get("errors"), report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


# --------------------------------------------------------------------------- deploy/


def _builders():
    builders = [pytest.param(kustomize_build.build_python, id="python-stand-in")]
    builders.append(
        pytest.param(
            kustomize_build.build_kubectl,
            id="kubectl-kustomize",
            marks=pytest.mark.skipif(not kustomize_build.kubectl_available(), reason="kubectl not on PATH"),
        )
    )
    return builders


@pytest.mark.parametrize("builder", _builders())
@pytest.mark.parametrize("kustomization", ["base", "overlays/kubernetes-backend"])
def test_kustomization_builds_valid_objects(builder, kustomization):
    objects = builder(DEPLOY / kustomization)
    validate_all(objects)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service",
         "PersistentVolumeClaim"]
    )


def test_python_stand_in_agrees_with_kustomize():
    if not kustomize_build.kubectl_available():
        pytest.skip("kubectl not on PATH: nothing to compare the stand-in with")

    def key(o):
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

    for kustomization in ("base", "overlays/kubernetes-backend"):
        real = sorted(kustomize_build.build_kubectl(DEPLOY / kustomization), key=key)
        ours = sorted(kustomize_build.build_python(DEPLOY / kustomization), key=key)
        assert real == ours, kustomization


def test_base_reads_applications_and_overlay_adds_patch():
    base = kustomize_build.build(DEPLOY / "base")
    overlay = kustomize_build.build(DEPLOY / "overlays" / "kubernetes-backend")
    assert application_rules(base) == [("ClusterRole", None, ["get", "list", "watch"])]
    assert application_rules(overlay) == [("ClusterRole", None, ["get", "list", "watch", "patch"])]
    for obj in base:
        assert "namespace" not in obj["metadata"], f"{obj['kind']} in deploy/base has a namespace"
    for obj in overlay:
        if obj["kind"] not in kustomize_build.CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == "argocd"
    binding = one(overlay, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argocd-cdevents", "namespace": "argocd"}]


def _comparable(obj: dict) -> dict:
    """An object without what legitimately differs between the chart and deploy/base."""
    obj = json.loads(json.dumps(obj))
    meta = obj["metadata"]
    meta.pop("namespace", None)
    meta["name"] = meta["name"].replace(f"-{NAMESPACE}-applications", "-applications")
    meta.pop("labels", None)
    if obj["kind"] == "Deployment":
        obj["spec"]["template"]["metadata"].pop("annotations", None)
    if obj["kind"] == "ConfigMap":
        obj["data"] = {k: yaml.safe_load(v) for k, v in obj["data"].items()}
    if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
        obj["roleRef"]["name"] = obj["roleRef"]["name"].replace(f"-{NAMESPACE}-applications", "-applications")
        for subject in obj["subjects"]:
            subject.pop("namespace", None)
    if obj["kind"] == "PersistentVolumeClaim":
        obj["spec"]["resources"]["requests"]["storage"] = str(obj["spec"]["resources"]["requests"]["storage"])
    return obj


def test_base_is_equivalent_to_chart_defaults(chart):
    chart_objects = {(o["kind"], _comparable(o)["metadata"]["name"]): _comparable(o) for o in render(chart, {})}
    base_objects = {
        (o["kind"], _comparable(o)["metadata"]["name"]): _comparable(o)
        for o in kustomize_build.build(DEPLOY / "base")
    }
    assert sorted(base_objects) == sorted(chart_objects)
    for key, base_object in base_objects.items():
        assert base_object == chart_objects[key], f"deploy/base {key} differs from the chart's defaults"


def test_argocd_snippets_are_valid_configmaps():
    for name in ("argocd-cm.yaml", "argocd-rbac-cm.yaml"):
        (doc,) = [d for d in yaml.safe_load_all((DEPLOY / "argocd" / name).read_text()) if d]
        validate_object(doc)
    cm = yaml.safe_load((DEPLOY / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["data"] == {"accounts.argocd-cdevents": "apiKey"}


def test_argocd_rbac_is_least_privilege():
    rbac = yaml.safe_load((DEPLOY / "argocd" / "argocd-rbac-cm.yaml").read_text())
    (key,) = rbac["data"]
    assert re.fullmatch(r"policy\.[A-Za-z0-9-]+\.csv", key), "must not replace policy.csv"
    active, commented = [], []
    for line in rbac["data"][key].splitlines():
        line = line.strip()
        fields = [f.strip() for f in line.lstrip("# ").split(",")]
        if fields[0] in ("p", "g"):
            (commented if line.startswith("#") else active).append(tuple(fields))
    policies = {(f[2], f[3]) for f in active if f[0] == "p"}
    assert policies == {("applications", "get"), ("applications", "sync")}
    assert all(f[1] == "role:argocd-cdevents" and f[5] == "allow" for f in active if f[0] == "p")
    assert ("g", "argocd-cdevents", "role:argocd-cdevents") in active
    optional = {f[3] for f in commented if f[0] == "p"}
    # docs/security.md: get, sync, update, create, delete. Never `rollback`: the gateway rolls
    # back with a sync and does not call Argo CD's rollback endpoint (docs/actions.md).
    assert optional == {"create", "delete", "update"}
    assert "rollback" not in {f[3] for f in active + commented if f[0] == "p"}


# --------------------------------------------------------------------------- monitoring


def test_alerts_and_dashboard_are_the_same_in_chart_and_deploy():
    chart_rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    deploy_rule = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    validate_object(deploy_rule)
    assert deploy_rule["kind"] == "PrometheusRule"
    assert deploy_rule["spec"] == chart_rules
    assert json.loads((DEPLOY / "grafana" / "dashboard.json").read_text()) == json.loads(
        (CHART / "files" / "dashboard.json").read_text()
    )


def _metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\bargocd_cdevents_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n for n in names}


def test_alerts_cover_the_required_conditions_with_contract_metrics():
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {
        "ArgoCDCDEventsDeadLettersGrowing",
        "ArgoCDCDEventsOutboxNotDraining",
        "ArgoCDCDEventsArgoCDErrorRate",
        "ArgoCDCDEventsPolicyReloadFailing",
        "ArgoCDCDEventsNoLeader",
    } <= set(alerts)
    no_leader = alerts["ArgoCDCDEventsNoLeader"]
    assert "max by (namespace) (argocd_cdevents_leader) == 0" in no_leader["expr"] and no_leader["for"] == "5m"
    assert "argocd_cdevents_dead_letters" in alerts["ArgoCDCDEventsDeadLettersGrowing"]["expr"]
    outbox = alerts["ArgoCDCDEventsOutboxNotDraining"]["expr"]
    assert "argocd_cdevents_outbox_pending" in outbox and 'result="delivered"' in outbox and "15m" in outbox
    assert "argocd_cdevents_argocd_requests_total" in alerts["ArgoCDCDEventsArgoCDErrorRate"]["expr"]
    assert "argocd_cdevents_policy_reload_success" in alerts["ArgoCDCDEventsPolicyReloadFailing"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert _metric_names(alert["expr"]) <= METRICS, alert["alert"]


def test_dashboard_shows_every_contract_metric():
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used == METRICS
    for expr in exprs:
        for histogram in HISTOGRAMS:
            if histogram in expr:
                assert f"{histogram}_bucket" in expr, "histograms are queried through their buckets"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_alert_rules_with_promtool():
    """promtool (Debian package `prometheus`) checks the rules and runs alerts_test.yaml."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (apt-get install prometheus)")
    here = Path(__file__).resolve().parent
    check = subprocess.run(
        [promtool, "check", "rules", str(CHART / "files" / "alerts.yaml")],
        capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yaml"], cwd=here, capture_output=True, text=True, timeout=60
    )
    assert test.returncode == 0, test.stdout + test.stderr


# --------------------------------------------------------------------------- image


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert stages == ["rust:1.95-bookworm", "gcr.io/distroless/cc-debian12:nonroot"]
    assert "cargo build --release --locked" in text
    assert re.search(r"^USER 65532", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored
