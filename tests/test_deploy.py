"""deploy/ checked offline: no Docker engine or cluster runs here, so the compose file is
validated against the Compose specification's schema, the Kubernetes manifests against the API
schemas (kubernetes-validate ships them), and the Dockerfile is parsed and held to what an
operator relies on: multi-stage, non-root, healthcheck, ffmpeg, the README's install step."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from service.config import Settings
from service.db import roles
from tests.wheel_build import BUILD_INPUTS, WHEEL_BUILD

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    jsonschema.validate(_compose(), schema)


def test_compose_brings_up_the_whole_system() -> None:
    services = _compose()["services"]
    assert {
        "postgres",
        "minio",
        "minio-init",
        "migrate",
        "callvault-1",
        "callvault-2",
        "callvault-worker",
        "lb",
    } <= set(services)
    init = " ".join(services["minio-init"]["command"])
    assert "mc mb" in init and "callvault-recordings" in init and "encrypt set sse-s3" in init
    for name in ("callvault-1", "callvault-2", "callvault-worker"):
        svc = services[name]
        env = svc["environment"]
        assert env["CALLVAULT_S3_BUCKET"] == "callvault-recordings"
        assert env["CALLVAULT_DATABASE_URL"].startswith("postgresql://")
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["migrate"]
    # webhooks on the web replicas; intake and the scheduled passes in the worker (issue 18)
    assert services["callvault-1"]["command"] == services["callvault-2"]["command"]
    assert services["callvault-1"]["command"] == ["serve", "--role", "web"]
    assert services["callvault-worker"]["command"] == ["worker"]
    # when CPU is short the webhooks come first: the worker's share is below each web replica's
    assert services["callvault-worker"]["cpu_shares"] < services["callvault-1"]["cpu_shares"]
    assert services["callvault-1"]["cpu_shares"] == services["callvault-2"]["cpu_shares"]
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "server callvault-1:8080" in nginx and "server callvault-2:8080" in nginx
    assert "callvault-worker" not in nginx


def test_compose_serves_as_a_role_that_row_level_security_binds() -> None:
    """The postgres image makes POSTGRES_USER a superuser, which `serve` and `worker` refuse
    (service/db/roles.py): only `migrate` connects as it; the others use the login role the
    mounted init script creates, with the grants embedded mode gives it."""
    services = _compose()["services"]
    postgres = services["postgres"]
    superuser = postgres["environment"]["POSTGRES_USER"]

    def user(service: str) -> str:
        # ${VAR:?message} interpolated as compose would (its "?" is no query string)
        raw = services[service]["environment"]["CALLVAULT_DATABASE_URL"]
        url = urlsplit(re.sub(r"\$\{[^}]*\}", "secret", raw))
        assert (
            url.hostname == "postgres" and url.path == "/" + postgres["environment"]["POSTGRES_DB"]
        )
        assert url.username is not None
        return url.username

    assert user("migrate") == superuser
    init_dir = next(
        v.split(":")[0] for v in postgres["volumes"] if ":/docker-entrypoint-initdb.d" in v
    )
    scripts = sorted((DEPLOY / init_dir).glob("*.sh"))
    assert scripts and all(os.access(p, os.X_OK) for p in scripts)
    init_sql = "\n".join(p.read_text() for p in scripts)
    for name in ("callvault-1", "callvault-2", "callvault-worker"):
        role = user(name)
        assert role != superuser and role == roles.SERVICE_ROLE
        created = re.search(rf"CREATE ROLE {role} LOGIN ([A-Z ]+) PASSWORD", init_sql)
        assert created and {"NOSUPERUSER", "NOBYPASSRLS"} <= set(created.group(1).split())
        for kind in ("TABLES", "SEQUENCES", "FUNCTIONS"):
            assert re.search(
                rf"ALTER DEFAULT PRIVILEGES IN SCHEMA public\s+GRANT [A-Z, ]+ ON {kind} TO {role};",
                init_sql,
            )
    password_var = re.search(r"pw=\"\$(\w+)\"", init_sql)
    assert password_var and password_var.group(1) in postgres["environment"]


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.mark.parametrize("doc", _manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_kubernetes_manifest_is_valid(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.33", strict=True)


def test_kubernetes_deployment_is_production_shaped() -> None:
    kinds = {d["kind"]: d for d in _manifests()}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Job"} <= set(kinds)
    deployments = {d["metadata"]["name"]: d for d in _manifests() if d["kind"] == "Deployment"}
    assert set(deployments) == {"callvault", "callvault-worker"}
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        secret_refs = {
            e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert {
            "CALLVAULT_SECRET_KEY",
            "CALLVAULT_DATABASE_URL",
            "CALLVAULT_TWILIO_AUTH_TOKEN",
        } <= secret_refs
    web, worker = deployments["callvault"], deployments["callvault-worker"]
    # a PBX's PUT recording is spooled on a web replica: room for two at the default cap
    max_recording = next(
        f.default for f in dataclasses.fields(Settings) if f.name == "max_recording_bytes"
    )
    for deployment in (web, worker):
        (work,) = deployment["spec"]["template"]["spec"]["volumes"]
        size = work["emptyDir"]["sizeLimit"]
        assert size.endswith("Gi") and int(size[:-2]) * 1024**3 >= 2 * max_recording
    assert web["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve", "--role", "web"]
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    # CPU under contention is shared by requests: a web replica's outweighs a worker's

    def cpu(deployment: dict[str, Any], kind: str) -> float:
        value = str(
            deployment["spec"]["template"]["spec"]["containers"][0]["resources"][kind]["cpu"]
        )
        return float(value[:-1]) / 1000 if value.endswith("m") else float(value)

    assert cpu(web, "requests") > cpu(worker, "requests")
    assert cpu(worker, "limits") <= cpu(web, "requests")
    # the Service and the disruption budget are the web replicas': no request reaches a worker
    worker_labels = worker["spec"]["template"]["metadata"]["labels"].items()
    for selector in (
        kinds["Service"]["spec"]["selector"],
        kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= web["spec"]["template"]["metadata"]["labels"].items()
        assert not selector.items() <= worker_labels
    assert kinds["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )


def _pip_args(command: str) -> list[str]:
    words = shlex.split(command)
    i = words.index("install")
    return [w for w in words[i + 1 :] if not w.startswith("$(")]


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck_and_ffmpeg() -> None:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    stages = [i for i in parser.structure if i["instruction"] == "FROM"]
    assert len(stages) >= 2 and all("slim" in s["value"] for s in stages)
    final = parser.structure[parser.structure.index(stages[-1]) :]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert any(i["instruction"] == "HEALTHCHECK" and "/healthz" in i["value"] for i in final)
    assert any(i["instruction"] == "RUN" and "ffmpeg" in i["value"] for i in final)
    assert not any(i["instruction"] == "RUN" and "pip install" in i["value"] for i in final)


def test_dockerfile_installs_the_way_the_readme_does() -> None:
    """The image's install is the Makefile's (which the README's commands run), minus the
    editable flag and the dev extras."""
    docker_runs = [
        i["value"]
        for i in DockerfileParser(path=str(DEPLOY / "Dockerfile")).structure
        if i["instruction"] == "RUN" and "pip install -c" in i["value"]
    ]
    assert len(docker_runs) == 1
    docker_install = next(p for p in docker_runs[0].split("&&") if "pip install -c" in p)
    makefile = (ROOT / "Makefile").read_text()
    make_line = next(ln for ln in makefile.splitlines() if "pip install" in ln and "-e" in ln)
    make_args = [a for a in _pip_args(make_line) if a not in ("-e",)]
    docker_args = _pip_args(docker_install)
    assert [a for a in make_args if a != ".[dev]"] == [a for a in docker_args if a != _WHEEL]
    assert re.search(r"COPY pyproject.toml constraints.txt", (DEPLOY / "Dockerfile").read_text())


_WHEEL = "/wheels/callvault-*.whl"


def test_dockerfile_installs_the_wheel_the_wheel_test_runs() -> None:
    """The image installs the wheel built from the same inputs by the same command as
    tests/test_wheel.py's, not the source tree."""
    structure = DockerfileParser(path=str(DEPLOY / "Dockerfile")).structure
    stages = [n for n, i in enumerate(structure) if i["instruction"] == "FROM"]
    build_stage = structure[stages[0] : stages[1]]
    copied = [
        word
        for i in build_stage
        if i["instruction"] == "COPY"
        for word in shlex.split(i["value"])[:-1]
    ]
    assert sorted(copied) == sorted(BUILD_INPUTS)
    runs = [i["value"] for i in build_stage if i["instruction"] == "RUN"]
    steps = [shlex.split(step) for run in runs for step in run.split("&&")]
    build = [s for s in steps if s[:2] == list(WHEEL_BUILD[:2])]
    assert build == [[*WHEEL_BUILD, "/wheels", "."]]
    installs = [s for s in steps if s[:2] == ["pip", "install"] and s[-1].endswith(".whl")]
    assert len(installs) == 1 and installs[0][-1] == _WHEEL


def test_a_proxy_stays_in_front_and_says_who_the_client_is() -> None:
    """Issue 12 items 9 and 10: the replicas believe X-Forwarded-For from the proxy only, and
    slow clients are the proxy's to absorb."""
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in nginx
    assert re.search(r"client_header_timeout \d+s;", nginx)
    compose = _compose()
    lb_address = compose["services"]["lb"]["networks"]["default"]["ipv4_address"]
    for name in ("callvault-1", "callvault-2"):
        env = compose["services"][name]["environment"]
        assert env["CALLVAULT_TRUSTED_PROXIES"] == lb_address
        assert "ports" not in compose["services"][name]
    kinds = {d["kind"]: d for d in _manifests()}
    assert kinds["Service"]["spec"]["type"] == "ClusterIP"
    backend = kinds["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == kinds["Service"]["metadata"]["name"]
    assert kinds["ConfigMap"]["data"]["CALLVAULT_TRUSTED_PROXIES"]
