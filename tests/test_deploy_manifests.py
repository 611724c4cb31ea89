"""The deployment manifests of many hosts (issue 16), checked client-side (no engine, no
cluster):

* deploy/swarm/volumeviz-stack.yml against the Compose Specification's JSON schema, the copy
  that check-jsonschema ships (`--builtin-schema vendor.compose-spec`);
* deploy/kubernetes/ against Kubernetes' own resource schemas, strict (unknown fields are
  errors), as kubernetes-validate ships them for each Kubernetes version;
* and what no schema knows: every `VV_*` name is a setting of `common.settings.Settings`,
  each container's settings validate, the agents run on every node and the gateway once,
  no secret is written inline, the names that tie the pieces together (services, ports,
  secrets, labels) match, and the agents' `sh -c` entrypoints export the right key pair.

The validators are dev dependencies: a missing one fails the test with how to install it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, a dependency of kubernetes-validate
import zmq
from pydantic import AliasChoices, SecretStr

from common.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK = REPO_ROOT / "deploy" / "swarm" / "volumeviz-stack.yml"
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
SECRETS_EXAMPLE = KUBERNETES / "examples" / "secrets.example.yaml"
K8S_MANIFESTS = ("namespace.yaml", "agent-daemonset.yaml", "gateway-deployment.yaml")
# The oldest Kubernetes we claim (still in providers' extended support), and the newest
# that kubernetes-validate knows.
K8S_OLDEST = "1.28"

NAMESPACE = "volumeviz"
AGENT_SECRETS_DIR = "/etc/volumeviz/agent-keys"
VOLUMES_DIR = "/var/lib/docker/volumes"
DOCKER_SOCKET = "/var/run/docker.sock"
LIVE_CAPABILITIES = {"SYS_ADMIN", "DAC_READ_SEARCH"}

VV_NAME = re.compile(r"\bVV_[A-Z0-9_]+\b")
# A CurveZMQ key as `python -m common.curve` prints it: 40 characters of Z85.
Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
TCP_ENDPOINT = re.compile(r"tcp://(?P<host>[^:/]+):(?P<port>\d+)")

INSTALL_HINT = (
    "the deployment manifests' validators are missing: pip install {package} "
    "(it belongs in pyproject.toml's dev extras: `make setup` installs it)"
)


# --- helpers ----------------------------------------------------------------------------


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(INSTALL_HINT.format(package=package), pytrace=False)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def _load_all(path: Path) -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    assert all(isinstance(doc, dict) for doc in documents), f"{path}: not YAML mappings"
    return documents


def _k8s_resources() -> list[dict[str, Any]]:
    return [doc for name in K8S_MANIFESTS for doc in _load_all(KUBERNETES / name)]


def _one(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [resource for resource in resources if resource["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/kubernetes/, found {len(found)}"
    return found[0]


def _strings(node: object) -> Iterator[str]:
    """Every string of a parsed document, mapping keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _aliases(field_alias: object) -> set[str]:
    if isinstance(field_alias, str):
        return {field_alias}
    if isinstance(field_alias, AliasChoices):
        return {choice for choice in field_alias.choices if isinstance(choice, str)}
    return set()


def _setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        names |= _aliases(field.validation_alias)
    return {name for name in names if name.startswith("VV_")}


def _secret_setting_names() -> set[str]:
    """The settings whose values are secrets: those typed SecretStr."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,)):
            names |= _aliases(field.validation_alias)
    return {name for name in names if name.startswith("VV_")}


def _key_pair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def _validate_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container would get from this environment (and nothing else)."""
    for name in _setting_names():
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def _compose_unescape(text: str) -> str:
    """What Swarm makes of a string of the stack file: `$$` is a literal `$`."""
    assert "$" not in text.replace("$$", ""), f"an unescaped $ would be interpolated: {text!r}"
    return text.replace("$$", "$")


def _kubernetes_unescape(text: str) -> str:
    """What the kubelet makes of a command string: `$$` is `$`, `$(NAME)` is expanded."""
    assert "$(" not in text.replace("$$", ""), f"$(...) would be expanded by the kubelet: {text!r}"
    return text.replace("$$", "$")


def _run_entrypoint(
    script: str, tmp_path: Path, paths: dict[str, Path], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run an `sh -c` entrypoint whose command is `env`, its secret files moved to tmp."""
    for real, fake in paths.items():
        script = script.replace(real, str(fake))
    sh = shutil.which("sh")
    assert sh is not None
    return subprocess.run(
        [sh, "-c", script, "agent-entrypoint", "env"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )


def _exported(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def _key_ring(tmp_path: Path, hosts: list[str]) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A key ring as the README makes it, with keys full of shell and awk metacharacters."""
    pairs = {host: _key_pair() for host in hosts}
    ring = tmp_path / "agent-keys"
    lines = ["# <host> <public key> <secret key>"]
    lines += [f"{host} {public} {secret}" for host, (public, secret) in pairs.items()]
    ring.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ring, pairs


# --- the real validators ----------------------------------------------------------------


def _check_compose_spec(path: Path) -> subprocess.CompletedProcess[str]:
    _require("check_jsonschema", "check-jsonschema")
    schema = ["--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_stack_file_is_valid_compose_spec() -> None:
    result = _check_compose_spec(STACK)
    assert result.returncode == 0, f"{STACK}:\n{result.stdout}{result.stderr}"


def test_compose_spec_validator_rejects_a_broken_stack(tmp_path: Path) -> None:
    """The schema check is no no-op: a misspelt deploy key in a copy of the stack fails it."""
    stack = _load(STACK)
    deploy = stack["services"]["gateway"]["deploy"]
    deploy["replica"] = deploy.pop("replicas")
    broken = tmp_path / "broken-stack.yml"
    broken.write_text(yaml.safe_dump(stack), encoding="utf-8")
    result = _check_compose_spec(broken)
    assert result.returncode != 0 and "'replica'" in result.stdout, result.stdout


def _k8s_versions() -> list[str]:
    _require("kubernetes_validate", "kubernetes-validate")
    import kubernetes_validate  # type: ignore[import-untyped]

    return [K8S_OLDEST, str(kubernetes_validate.latest_version())]


def _k8s_validate(resource: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(item) for item in error.path)
        name = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
        pytest.fail(f"{name} (Kubernetes {version}) at {where}: {error.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"no schema: {error.message}", pytrace=False)


@pytest.mark.parametrize("name", [*K8S_MANIFESTS, "examples/secrets.example.yaml"])
def test_kubernetes_manifests_match_the_schemas(name: str) -> None:
    documents = _load_all(KUBERNETES / name)
    assert documents, f"{name} holds no resource"
    for version in _k8s_versions():
        for resource in documents:
            _k8s_validate(resource, version)


def test_kubernetes_validator_rejects_a_misspelt_field() -> None:
    version = _k8s_versions()[-1]
    import kubernetes_validate

    daemonset = _one(_k8s_resources(), "DaemonSet")
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    container["securityContxt"] = container.pop("securityContext")
    with pytest.raises(kubernetes_validate.ValidationError, match="securityContxt"):
        kubernetes_validate.validate(daemonset, version, strict=True)


# --- settings: every name is real, every container's values validate ------------------------


@pytest.mark.parametrize(
    "path",
    [STACK, KUBERNETES / "agent-daemonset.yaml", KUBERNETES / "gateway-deployment.yaml"],
    ids=lambda path: path.name,
)
def test_every_vv_name_is_a_setting(path: Path) -> None:
    known = _setting_names()
    assert {"VV_BUS_AGENTS_ENDPOINT", "VV_BUS_AUTHORIZED_KEYS", "VV_HOST_ID"} <= known
    used = {name for text in _strings(_load_all(path)) for name in VV_NAME.findall(text)}
    assert used, f"{path} sets no VV_ variable"
    assert not used - known, f"{path}: not settings of common.settings: {sorted(used - known)}"


def _swarm_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, please"
    return {str(name): str(value) for name, value in env.items()}


def _literal_swarm_env(service: dict[str, Any]) -> dict[str, str]:
    """The environment with Swarm's templates and the deployer's variables filled in."""
    env: dict[str, str] = {}
    for name, value in _swarm_env(service).items():
        value = value.replace("{{.Node.Hostname}}", "node-a")
        env[name] = re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "volumeviz.example.com", value)
    return env


def test_swarm_settings_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _load(STACK)["services"]
    gateway_public, gateway_secret = _key_pair()
    agent_public, agent_secret = _key_pair()
    from_secrets = {  # what the entrypoints export from /run/secrets
        "VV_BUS_CURVE_GATEWAY_PUBLIC": gateway_public,
        "VV_BUS_CURVE_GATEWAY_SECRET": gateway_secret,
        "VV_BUS_CURVE_AGENT_PUBLIC": agent_public,
        "VV_BUS_CURVE_AGENT_SECRET": agent_secret,
        "VV_API_TOKEN": "a-token",
    }
    for name in ("agent-watcher", "agent-scanner", "gateway"):
        env = _literal_swarm_env(services[name])
        settings = _validate_settings(env | from_secrets, monkeypatch)
        assert settings.host_id == (None if name == "gateway" else "node-a")
    gateway = _validate_settings(_literal_swarm_env(services["gateway"]), monkeypatch)
    assert gateway.multi_host and gateway.bus_agents_endpoint == "tcp://0.0.0.0:5291"
    assert gateway.data_dir == Path("/data")
    assert "volumeviz.example.com" in gateway.gateway_hosts
    assert "127.0.0.1" in gateway.gateway_hosts  # its health check asks there


def _k8s_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_kubernetes_settings_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = _k8s_resources()
    daemonset, deployment = _one(resources, "DaemonSet"), _one(resources, "Deployment")
    containers = [
        *daemonset["spec"]["template"]["spec"]["containers"],
        *deployment["spec"]["template"]["spec"]["containers"],
    ]
    for container in containers:
        env: dict[str, str] = {}
        for name, entry in _k8s_env(container).items():
            if "value" in entry:
                env[name] = str(entry["value"])
            elif "secretKeyRef" in entry["valueFrom"]:
                env[name] = "a-token" if name == "VV_API_TOKEN" else _key_pair()[0]
            else:
                assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
                env[name] = "node-a"
        settings = _validate_settings(env, monkeypatch)
        if container["name"] == "gateway":
            assert settings.multi_host and settings.bus_agents_endpoint == "tcp://0.0.0.0:5291"
            assert settings.data_dir == Path("/data")
            assert "localhost" in settings.gateway_hosts  # the probes' Host
        else:
            assert settings.host_id == "node-a"


# --- the shape: agents everywhere, one gateway ---------------------------------------------


def test_swarm_agents_are_global_and_the_gateway_is_one_pinned_replica() -> None:
    stack = _load(STACK)
    services = stack["services"]
    assert set(services) == {"agent-watcher", "agent-scanner", "gateway"}
    for name in ("agent-watcher", "agent-scanner"):
        assert services[name]["deploy"]["mode"] == "global", name
        assert "replicas" not in services[name]["deploy"], name
        assert "ports" not in services[name], f"{name} serves nothing"
    deploy = services["gateway"]["deploy"]
    assert deploy["mode"] == "replicated" and deploy["replicas"] == 1
    assert deploy["update_config"]["order"] == "stop-first", "never two gateways at once"
    constraints = deploy["placement"]["constraints"]
    assert any(c.startswith(("node.labels.", "node.role")) for c in constraints), constraints
    # /data on a named volume of the stack.
    data = [v for v in services["gateway"]["volumes"] if str(v).endswith(":/data")]
    assert data and data[0].split(":")[0] in stack["volumes"], services["gateway"]["volumes"]


def test_swarm_bus_is_an_overlay_and_endpoints_meet() -> None:
    stack = _load(STACK)
    services = stack["services"]
    assert stack["networks"]["bus"]["driver"] == "overlay"
    for name, service in services.items():
        assert service["networks"] == ["bus"], f"{name}: only the bus network"
        assert "network_mode" not in service, name
    gateway = _swarm_env(services["gateway"])
    assert gateway["VV_HOST"] == "0.0.0.0"
    pairs = [
        ("agent-watcher", "VV_BUS_AGENTS_ENDPOINT"),
        ("agent-scanner", "VV_BUS_JOBS_ENDPOINT"),
    ]
    for name, variable in pairs:
        connect = TCP_ENDPOINT.fullmatch(_swarm_env(services[name])[variable])
        bind = TCP_ENDPOINT.fullmatch(gateway[variable])
        assert connect and bind, (name, variable)
        assert connect["host"] == "gateway" and bind["host"] == "0.0.0.0", (name, variable)
        assert connect["port"] == bind["port"], (name, variable)
    assert [p["target"] for p in services["gateway"]["ports"]] == [8080]  # the bus unpublished


def _mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    mounts: dict[str, dict[str, Any]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts[target] = {"source": source, "read_only": mode == ["ro"]}
        else:
            mounts[volume["target"]] = volume
    return mounts


def test_swarm_agent_privileges_are_the_least_each_needs() -> None:
    services = _load(STACK)["services"]
    watcher, scanner = services["agent-watcher"], services["agent-scanner"]
    assert _mounts(watcher)[DOCKER_SOCKET]["source"] == DOCKER_SOCKET
    assert VOLUMES_DIR not in _mounts(watcher)
    volumes = _mounts(scanner)[VOLUMES_DIR]
    assert volumes["source"] == VOLUMES_DIR and volumes["read_only"] is True
    assert DOCKER_SOCKET not in _mounts(scanner), "the scanner never talks to the engine"
    assert set(scanner["cap_add"]) == LIVE_CAPABILITIES
    assert "cap_add" not in watcher and "cap_add" not in services["gateway"]
    for service in (watcher, scanner):
        assert _swarm_env(service)["VV_HOST_ID"] == "{{.Node.Hostname}}"


def _k8s_pod(resource: dict[str, Any]) -> dict[str, Any]:
    pod = resource["spec"]["template"]["spec"]
    assert isinstance(pod, dict)
    return pod


def test_kubernetes_agents_are_a_daemonset_and_the_gateway_one_replica() -> None:
    resources = _k8s_resources()
    kinds = sorted(resource["kind"] for resource in resources)
    assert kinds == [
        "DaemonSet",
        "Deployment",
        "Namespace",
        "PersistentVolumeClaim",
        "Service",
    ]
    for resource in resources:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == NAMESPACE, resource["metadata"]
    assert _one(resources, "Namespace")["metadata"]["name"] == NAMESPACE
    daemonset = _one(resources, "DaemonSet")
    pod = _k8s_pod(daemonset)
    assert [c["name"] for c in pod["containers"]] == ["watcher", "scanner"]
    assert not pod.get("hostNetwork"), "agents only connect out"
    deployment = _one(resources, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "never two gateways at once"
    claim = _one(resources, "PersistentVolumeClaim")
    gateway_pod = _k8s_pod(deployment)
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in gateway_pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [claim["metadata"]["name"]]
    mounts = {m["mountPath"]: m["name"] for m in gateway_pod["containers"][0]["volumeMounts"]}
    data_volume = next(v["name"] for v in gateway_pod["volumes"] if "persistentVolumeClaim" in v)
    assert mounts["/data"] == data_volume


def test_kubernetes_agent_privileges_and_host_paths() -> None:
    pod = _k8s_pod(_one(_k8s_resources(), "DaemonSet"))
    host_paths = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    by_path = {spec["path"]: (name, spec["type"]) for name, spec in host_paths.items()}
    assert by_path[DOCKER_SOCKET][1] == "Socket" and by_path[VOLUMES_DIR][1] == "Directory"
    watcher, scanner = pod["containers"]
    watcher_mounts = {m["name"]: m for m in watcher["volumeMounts"]}
    scanner_mounts = {m["name"]: m for m in scanner["volumeMounts"]}
    socket_volume, volumes_volume = by_path[DOCKER_SOCKET][0], by_path[VOLUMES_DIR][0]
    assert watcher_mounts[socket_volume]["mountPath"] == DOCKER_SOCKET
    assert volumes_volume not in watcher_mounts
    assert socket_volume not in scanner_mounts, "the scanner never talks to the engine"
    volumes = scanner_mounts[volumes_volume]
    assert volumes["mountPath"] == VOLUMES_DIR and volumes["readOnly"] is True
    capabilities = scanner["securityContext"]["capabilities"]
    assert set(capabilities["add"]) == LIVE_CAPABILITIES and capabilities["drop"] == ["ALL"]
    assert watcher["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for container in (watcher, scanner):
        assert not container["securityContext"].get("privileged")
        host_id = _k8s_env(container)["VV_HOST_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert host_id == "spec.nodeName"


def test_kubernetes_service_reaches_the_gateway_and_the_agents_use_it() -> None:
    resources = _k8s_resources()
    service, deployment = _one(resources, "Service"), _one(resources, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    gateway = _k8s_pod(deployment)["containers"][0]
    named_ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}
    service_ports = {
        port["port"]: named_ports[port["targetPort"]] for port in service["spec"]["ports"]
    }
    assert service_ports == {8080: 8080, 5291: 5291, 5292: 5292}
    gateway_env = _k8s_env(gateway)
    watcher, scanner = _k8s_pod(_one(resources, "DaemonSet"))["containers"]
    pairs = [(watcher, "VV_BUS_AGENTS_ENDPOINT"), (scanner, "VV_BUS_JOBS_ENDPOINT")]
    for container, variable in pairs:
        connect = TCP_ENDPOINT.fullmatch(_k8s_env(container)[variable]["value"])
        bind = TCP_ENDPOINT.fullmatch(gateway_env[variable]["value"])
        assert connect and bind, variable
        assert connect["host"] == service["metadata"]["name"], variable
        assert bind["host"] == "0.0.0.0" and connect["port"] == bind["port"], variable


# --- secrets: never inline, always granted -------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [STACK, *(KUBERNETES / name for name in K8S_MANIFESTS), SECRETS_EXAMPLE],
    ids=lambda path: path.name,
)
def test_no_key_is_written_in_a_manifest(path: Path) -> None:
    for text in _strings(_load_all(path)):
        for word in text.split():
            assert not Z85_KEY.fullmatch(word), f"{path}: a CurveZMQ key inline: {word[:8]}..."


def _scripts(service_or_container: dict[str, Any]) -> list[str]:
    parts = [*service_or_container.get("entrypoint", []), *service_or_container.get("command", [])]
    return [part for part in parts if isinstance(part, str) and "\n" in part]


def _assignments(script: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*(VV_[A-Z0-9_]+)=(.*)$", script, flags=re.M))


def test_swarm_secrets_are_external_granted_and_read_from_files() -> None:
    stack = _load(STACK)
    secret_names = _secret_setting_names()
    assert {"VV_API_TOKEN", "VV_BUS_CURVE_AGENT_SECRET", "VV_BUS_CURVE_GATEWAY_SECRET"} <= (
        secret_names
    )
    for name, secret in stack["secrets"].items():
        assert secret.get("external") is True and set(secret) <= {"external", "name"}, (
            f"secret {name}: external (docker secret create), never a file or a value here"
        )
    for name, service in stack["services"].items():
        inline = secret_names & set(_swarm_env(service))
        assert not inline, f"{name}: secret settings in its environment: {sorted(inline)}"
        granted = set(service.get("secrets", []))
        assert granted <= set(stack["secrets"]), name
        used = {
            secret
            for text in _strings(service)
            for secret in re.findall(r"/run/secrets/([A-Za-z0-9._-]+)", text)
        }
        assert used and used <= granted, f"{name} reads {sorted(used - granted)}, not granted"
        for script in _scripts(service):
            for variable, value in _assignments(_compose_unescape(script)).items():
                assert value.startswith("$("), f"{name}: {variable} must come from a file"
    assert "volumeviz-agents" in stack["services"]["gateway"]["secrets"]
    for name in ("agent-watcher", "agent-scanner"):
        assert "volumeviz-gateway-secret" not in stack["services"][name]["secrets"], name


def _example_secrets() -> dict[str, dict[str, str]]:
    documents = _load_all(SECRETS_EXAMPLE)
    assert all(doc["kind"] == "Secret" for doc in documents)
    return {doc["metadata"]["name"]: doc["stringData"] for doc in documents}


def test_kubernetes_secrets_are_referenced_by_name_only() -> None:
    resources = _k8s_resources()
    assert "Secret" not in {resource["kind"] for resource in resources}, (
        "Secrets are made from files, not applied with the manifests"
    )
    assert SECRETS_EXAMPLE.parent != KUBERNETES, "kubectl apply -f deploy/kubernetes/ skips it"
    examples = _example_secrets()
    secret_names = _secret_setting_names()
    for kind in ("DaemonSet", "Deployment"):
        pod = _k8s_pod(_one(resources, kind))
        for volume in pod["volumes"]:
            if "secret" in volume:
                secret = volume["secret"]
                keys = {item["key"] for item in secret.get("items", [])}
                assert keys <= set(examples[secret["secretName"]]), volume
        for container in pod["containers"]:
            for name, entry in _k8s_env(container).items():
                if name in secret_names or name.startswith("VV_BUS_CURVE_"):
                    assert "value" not in entry, f"{container['name']}: {name} inline"
                reference = entry.get("valueFrom", {}).get("secretKeyRef")
                if reference is not None:
                    assert reference["key"] in examples[reference["name"]], reference
            for script in _scripts(container):
                for variable, value in _assignments(_kubernetes_unescape(script)).items():
                    assert value.startswith("$("), f"{container['name']}: {variable} inline"
    gateway = _k8s_pod(_one(resources, "Deployment"))
    authorized = _k8s_env(gateway["containers"][0])["VV_BUS_AUTHORIZED_KEYS"]["value"]
    mounts = {m["mountPath"]: m for m in gateway["containers"][0]["volumeMounts"]}
    volume = next(v for v in gateway["volumes"] if v["name"] == mounts[authorized]["name"])
    assert volume["secret"]["secretName"] == "volumeviz-agents"
    assert mounts[authorized]["subPath"] in examples["volumeviz-agents"]


def test_secrets_example_holds_placeholders_not_keys() -> None:
    for name, data in _example_secrets().items():
        for key, value in data.items():
            assert "REPLACE-ME" in value, f"{name}.{key}: a placeholder, please"
            for word in value.split():
                assert not Z85_KEY.fullmatch(word), f"{name}.{key}: looks like a real key"


# --- the agents' entrypoints, run ----------------------------------------------------------


def _agent_entrypoints() -> list[tuple[str, str, dict[str, str]]]:
    """(where, script, secret file -> name in the temp dir) of every agent entrypoint."""
    found: list[tuple[str, str, dict[str, str]]] = []
    services = _load(STACK)["services"]
    for name in ("agent-watcher", "agent-scanner"):
        (script,) = _scripts(services[name])
        found.append(
            (
                f"swarm {name}",
                _compose_unescape(script),
                {
                    "/run/secrets/volumeviz-agent-keys": "agent-keys",
                    "/run/secrets/volumeviz-gateway-public": "gateway-public",
                },
            )
        )
    for container in _k8s_pod(_one(_k8s_resources(), "DaemonSet"))["containers"]:
        (script,) = _scripts(container)
        found.append(
            (
                f"kubernetes {container['name']}",
                _kubernetes_unescape(script),
                {
                    f"{AGENT_SECRETS_DIR}/agent-keys": "agent-keys",
                },
            )
        )
    return found


def test_agent_entrypoints_export_their_own_key_pair(tmp_path: Path) -> None:
    _, pairs = _key_ring(tmp_path, ["node-a", "node-b", "node-c.example.com"])
    gateway_public, _ = _key_pair()
    (tmp_path / "gateway-public").write_text(gateway_public + "\n", encoding="utf-8")
    entrypoints = _agent_entrypoints()
    assert len(entrypoints) == 4
    for where, script, files in entrypoints:
        paths = {real: tmp_path / fake for real, fake in files.items()}
        for host, (public, secret) in pairs.items():
            env = {"VV_HOST_ID": host, "VV_BUS_CURVE_GATEWAY_PUBLIC": gateway_public}
            result = _run_entrypoint(script, tmp_path, paths, env)
            assert result.returncode == 0, f"{where} {host}: {result.stderr}"
            exported = _exported(result.stdout)
            assert exported["VV_BUS_CURVE_AGENT_PUBLIC"] == public, where
            assert exported["VV_BUS_CURVE_AGENT_SECRET"] == secret, where
            assert exported["VV_BUS_CURVE_GATEWAY_PUBLIC"] == gateway_public, where
        env = {"VV_HOST_ID": "node-z", "VV_BUS_CURVE_GATEWAY_PUBLIC": gateway_public}
        result = _run_entrypoint(script, tmp_path, paths, env)
        assert result.returncode == 2 and "no key pair" in result.stderr, (where, result)
        assert "VV_BUS_CURVE_AGENT_SECRET" not in result.stdout


def test_swarm_gateway_entrypoint_exports_its_secrets(tmp_path: Path) -> None:
    gateway = _load(STACK)["services"]["gateway"]
    (script,) = _scripts(gateway)
    script = _compose_unescape(script)
    assert script.rstrip().endswith("exec python -m services.gateway")
    script = script.replace("exec python -m services.gateway", 'exec "$@"')
    values = {
        "volumeviz-gateway-public": _key_pair()[0],
        "volumeviz-gateway-secret": _key_pair()[1],
        "volumeviz-api-token": "t0ken$&*",
    }
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n", encoding="utf-8")
    paths = {f"/run/secrets/{name}": tmp_path / name for name in values}
    result = _run_entrypoint(script, tmp_path, paths, {})
    assert result.returncode == 0, result.stderr
    exported = _exported(result.stdout)
    assert exported["VV_BUS_CURVE_GATEWAY_PUBLIC"] == values["volumeviz-gateway-public"]
    assert exported["VV_BUS_CURVE_GATEWAY_SECRET"] == values["volumeviz-gateway-secret"]
    assert exported["VV_API_TOKEN"] == values["volumeviz-api-token"]
    (tmp_path / "volumeviz-api-token").unlink()
    result = _run_entrypoint(script, tmp_path, paths, {})
    assert result.returncode != 0, "a missing secret stops the gateway"
