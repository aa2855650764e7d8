"""The Kubernetes manifests (kubernetes=true): valid, complete, consistent and locked down.

Validated offline with kubernetes-validate (strict: unknown fields fail) for both databases;
`kubectl kustomize` builds them where kubectl is installed.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import copier
import kubernetes_validate
import pytest
import yaml

from .conftest import TEMPLATE, Render, render_into
from .test_render import env_values, files_of

# The oldest Kubernetes the manifests are meant for, and the newest that kubernetes-validate
# knows.
KUBERNETES_VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]
SLUG = "acme-orders"
POD_LABELS = {"app.kubernetes.io/name": SLUG, "app.kubernetes.io/component": "api"}
# Settings that the contract names but core/config.py may not read itself: uvicorn reads
# WEB_CONCURRENCY; logging and metrics read theirs.
CONTRACT_SETTINGS = {"WEB_CONCURRENCY", "LOG_LEVEL", "LOG_FORMAT", "METRICS_ENABLED"}
# PostgreSQL's default max_connections, which every pod's pool together must stay under.
POSTGRES_MAX_CONNECTIONS = 100


class Manifests:
    """A render with kubernetes=true: its manifests by kind, and what else the tests read."""

    def __init__(self, project: Path, database: str) -> None:
        self.project = project
        self.database = database
        self.folder = project / "deploy" / "kubernetes"
        self.kustomization = yaml.safe_load((self.folder / "kustomization.yaml").read_text())
        self.files = sorted(p for p in self.folder.glob("*.yaml") if p.name != "kustomization.yaml")
        self.by_kind: dict[str, dict[str, Any]] = {}
        for path in self.files:
            for document in yaml.safe_load_all(path.read_text()):
                assert document["kind"] not in self.by_kind, f"two {document['kind']}s"
                self.by_kind[document["kind"]] = document

    @property
    def postgres(self) -> bool:
        return self.database == "postgresql"

    def pod_specs(self) -> list[dict[str, Any]]:
        kinds = ["Deployment", "Job"] if self.postgres else ["Deployment"]
        return [self.by_kind[kind]["spec"]["template"]["spec"] for kind in kinds]

    @property
    def api(self) -> dict[str, Any]:
        """The Deployment's one container."""
        (container,) = self.by_kind["Deployment"]["spec"]["template"]["spec"]["containers"]
        return container


def render_manifests(factory: pytest.TempPathFactory, database: str) -> Manifests:
    project = render_into(factory.mktemp(database) / "project", kubernetes=True, database=database)
    return Manifests(project, database)


@pytest.fixture(scope="module")
def postgresql(tmp_path_factory: pytest.TempPathFactory) -> Manifests:
    return render_manifests(tmp_path_factory, "postgresql")


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Manifests:
    return render_manifests(tmp_path_factory, "sqlite")


@pytest.fixture(params=["postgresql", "sqlite"])
def rendered(request: pytest.FixtureRequest) -> Manifests:
    """Each database's manifests (rendered once for the module)."""
    return request.getfixturevalue(request.param)


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(rendered: Manifests, version: str) -> None:
    for path in rendered.files:
        for document in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(document, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field(rendered: Manifests) -> None:
    deployment = copy.deepcopy(rendered.by_kind["Deployment"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_kustomization_lists_every_manifest_and_only_existing_ones(rendered: Manifests) -> None:
    listed = rendered.kustomization["resources"]
    assert len(listed) == len(set(listed))
    for name in listed:
        assert (rendered.folder / name).is_file(), name
    assert set(listed) == {path.name for path in rendered.files}
    assert {p.name for p in rendered.folder.iterdir()} == {*listed, "kustomization.yaml"}


def test_the_kustomization_names_the_image_of_every_pod(rendered: Manifests) -> None:
    (image,) = rendered.kustomization["images"]
    version = tomllib.loads((rendered.project / "pyproject.toml").read_text())["project"]["version"]
    assert (image["name"], image["newTag"]) == (SLUG, version)
    for spec in rendered.pod_specs():
        assert [container["image"] for container in spec["containers"]] == [SLUG]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_them(rendered: Manifests) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(rendered.folder)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    built = list(yaml.safe_load_all(result.stdout))
    assert sorted(d["kind"] for d in built) == sorted(rendered.by_kind)
    images = {c["image"] for d in built if "template" in d.get("spec", {})
              for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {f"{SLUG}:0.1.0"}


def test_the_probes_ask_the_health_routes(rendered: Manifests) -> None:
    api = rendered.api
    ports = {port["name"]: port["containerPort"] for port in api["ports"]}
    assert api["livenessProbe"]["httpGet"]["path"] == "/api/v1/health/live"
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/v1/health/ready"
    assert api["startupProbe"]["httpGet"]["path"] == "/api/v1/health/live"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert api[probe]["httpGet"]["port"] in ports, probe
    # /health/ready answers 503 within 5 s when the database is away: no probe timeout first.
    assert api["readinessProbe"]["timeoutSeconds"] >= 5


def test_the_pods_run_locked_down(rendered: Manifests) -> None:
    dockerfile = (rendered.project / "Dockerfile").read_text()
    image_uid = int(re.search(r"useradd [^\n]*--uid (\d+)", dockerfile)[1])  # type: ignore[index]
    for spec in rendered.pod_specs():
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == image_uid
        assert spec["securityContext"]["runAsGroup"] == image_uid
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            assert 0 < cpu(requests["cpu"]) <= cpu(limits["cpu"])
            assert 0 < memory(requests["memory"]) <= memory(limits["memory"])


def test_settings_come_from_the_config_map_and_a_secret_that_is_not_in_the_repository(
    rendered: Manifests,
) -> None:
    config_map = rendered.by_kind["ConfigMap"]
    for spec in rendered.pod_specs():
        for container in spec["containers"] + spec.get("initContainers", []):
            sources = container["envFrom"]
            assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in sources
    assert "Secret" not in rendered.by_kind
    settings = config_map["data"]
    assert settings["ENVIRONMENT"] == "production"
    assert all(isinstance(value, str) for value in settings.values())
    known: set[str] = set()
    for domain in ("core", "email"):
        config = rendered.project / "src" / "acme_orders" / domain / "config.py"
        if config.exists():
            known |= set(re.findall(r"^    ([A-Z][A-Z0-9_]*): ", config.read_text(), re.MULTILINE))
    assert set(settings) <= known | CONTRACT_SETTINGS
    assert not {"SECRET_KEY", "FIRST_SUPERUSER_PASSWORD", "SMTP_PASSWORD"} & set(settings)
    # A PostgreSQL URL holds a password: it belongs in the Secret. SQLite's names a file.
    assert ("DATABASE_URL" in settings) == (not rendered.postgres)
    secrets = env_values(rendered.project)
    for path in files_of(rendered.project / "deploy"):
        text = path.read_text()
        assert secrets["SECRET_KEY"] not in text
        assert secrets["FIRST_SUPERUSER_PASSWORD"] not in text


def test_the_first_superusers_password_reaches_no_serving_container(rendered: Manifests) -> None:
    # The serving containers name the secrets they need, one by one ...
    assert rendered.api["envFrom"] == [{"configMapRef": {"name": f"{SLUG}-settings"}}]
    secrets = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in rendered.api["env"]
        if "valueFrom" in item
    }
    needed = {"SECRET_KEY"} | ({"DATABASE_URL"} if rendered.postgres else set())
    assert set(secrets) == needed
    assert all(ref == {"name": f"{SLUG}-secrets", "key": name} for name, ref in secrets.items())
    # ... and the one that creates the first superuser gets the whole Secret.
    if rendered.postgres:
        (creator,) = rendered.by_kind["Job"]["spec"]["template"]["spec"]["containers"]
    else:
        (creator,) = rendered.by_kind["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    assert {"secretRef": {"name": f"{SLUG}-secrets"}} in creator["envFrom"]
    assert "python -m acme_orders.initial_data" in creator["command"][-1]


def test_the_server_listens_where_the_pods_are_probed_and_believes_the_ingress(
    rendered: Manifests,
) -> None:
    settings = rendered.by_kind["ConfigMap"]["data"]
    (port,) = rendered.api["ports"]
    assert int(settings["PORT"]) == port["containerPort"]
    assert settings["HOST"] == "0.0.0.0"
    assert "command" not in rendered.api and "args" not in rendered.api  # the image's
    assert settings["FORWARDED_ALLOW_IPS"]


def test_the_readme_creates_the_secret_the_pods_read(rendered: Manifests) -> None:
    readme = (rendered.project / "README.md").read_text()
    section = readme.split("## Deploying to Kubernetes", 1)[1]
    command: list[str] = []
    for line in section[section.index("kubectl create secret generic ") :].splitlines():
        command.append(line)
        if not line.endswith("\\"):
            break
    assert command[0].split()[4] == f"{SLUG}-secrets"
    keys = set(re.findall(r"--from-literal=([A-Z_]+)=", "\n".join(command)))
    needed = {"SECRET_KEY", "FIRST_SUPERUSER_PASSWORD"} | ({"DATABASE_URL"} if rendered.postgres
                                                            else set())  # fmt: skip
    if (rendered.project / "src" / "acme_orders" / "email").exists():
        needed.add("SMTP_PASSWORD")
    assert keys == needed


def test_migrations_run_once_per_release(rendered: Manifests) -> None:
    api_env = {item["name"]: item.get("value") for item in rendered.api.get("env", [])}
    if rendered.postgres:
        job = rendered.by_kind["Job"]["spec"]["template"]["spec"]
        assert job["restartPolicy"] == "Never"
        (migrate,) = job["containers"]
        assert migrate["command"][-1].startswith("alembic upgrade head && ")
        # The Job migrates; the Deployment's pods must not race it (docker-entrypoint.sh).
        assert api_env["MIGRATE_ON_START"] == "false"
    else:
        # One pod migrates at its own start: there is nothing to race.
        assert "Job" not in rendered.by_kind
        assert api_env.get("MIGRATE_ON_START", "true") == "true"


def test_the_first_release_step_applies_what_the_job_needs_and_no_pod_of_the_service(
    postgresql: Manifests,
) -> None:
    readme = (postgresql.project / "README.md").read_text()
    selector = re.search(r"kubectl apply -k deploy/kubernetes -l '([\w./-]+)!=([\w.-]+)'", readme)
    assert selector is not None
    key, excluded = selector[1], selector[2]
    first = {kind for kind, resource in postgresql.by_kind.items()
             if resource["metadata"].get("labels", {}).get(key) != excluded}  # fmt: skip
    assert first == {"ConfigMap", "Job"}


def test_postgresql_scales_out_within_the_database_connections(postgresql: Manifests) -> None:
    deployment, hpa, pdb = (postgresql.by_kind[k] for k in
                            ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"))  # fmt: skip
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # The autoscaler owns the replica count: an apply must not reset it.
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert pdb["spec"]["selector"]["matchLabels"] == POD_LABELS
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    settings = postgresql.by_kind["ConfigMap"]["data"]
    per_pod = (int(settings["DATABASE_POOL_SIZE"]) + int(settings["DATABASE_MAX_OVERFLOW"])) * int(
        settings["WEB_CONCURRENCY"]
    )
    # Every pod at its largest, and the migration Job's one connection.
    assert hpa["spec"]["maxReplicas"] * per_pod + 1 < POSTGRES_MAX_CONNECTIONS


def test_sqlite_runs_one_replica_on_a_volume(sqlite: Manifests) -> None:
    deployment = sqlite.by_kind["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    # Never two pods on the file, not even during a release.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} & set(sqlite.by_kind)
    claim = sqlite.by_kind["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in sqlite.api["volumeMounts"]}
    claimed = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
    assert claimed == claim["metadata"]["name"]
    url = sqlite.by_kind["ConfigMap"]["data"]["DATABASE_URL"]
    assert url.startswith("sqlite+aiosqlite:////data/")


def test_the_service_and_prometheus_reach_the_pods(rendered: Manifests) -> None:
    service = rendered.by_kind["Service"]
    template = rendered.by_kind["Deployment"]["spec"]["template"]
    assert rendered.by_kind["Deployment"]["spec"]["selector"]["matchLabels"] == POD_LABELS
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    ports = {port["name"]: port["containerPort"] for port in rendered.api["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports[service_port["targetPort"]]
    assert rendered.by_kind["ConfigMap"]["data"]["METRICS_ENABLED"] == "true"


def test_names_with_quotes_and_colons_stay_valid_yaml(render: Render) -> None:
    name = 'Bob\'s "Quoted": Shop #1'
    project = render(project_name=name, project_slug="bobs-shop", author_email="a'b@ex.com",
                     kubernetes=True)  # fmt: skip
    config_map = yaml.safe_load((project / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    assert config_map["data"]["PROJECT_NAME"] == name
    assert config_map["data"]["FIRST_SUPERUSER_EMAIL"] == "a'b@ex.com"
    kubernetes_validate.validate(config_map, KUBERNETES_VERSIONS[-1], strict=True)


def test_kubernetes_without_docker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kubernetes needs docker") as error:
        copier.run_copy(
            str(TEMPLATE), tmp_path / "out",
            data={"project_name": "Acme Orders", "kubernetes": True, "docker": False},
            defaults=True, vcs_ref="HEAD", quiet=True,
        )  # fmt: skip
    assert "Traceback" not in str(error.value)


# --- docker-entrypoint.sh's MIGRATE_ON_START ---------------------------------------------


@pytest.fixture(scope="module")
def entrypoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render_into(tmp_path_factory.mktemp("docker") / "project")
    return project / "docker-entrypoint.sh"


def run_entrypoint(entrypoint: Path, tmp_path: Path, migrate: str | None) -> tuple[int, str]:
    """Run it with a stand-in alembic; returns (exit status, what ran, in order)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "ran"
    (bin_dir / "alembic").write_text(f'#!/bin/sh\necho "alembic $*" >> {ran}\n')
    (bin_dir / "alembic").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("MIGRATE_ON_START", None)
    if migrate is not None:
        env["MIGRATE_ON_START"] = migrate
    result = subprocess.run(
        ["sh", str(entrypoint), "sh", "-c", f"echo serve >> {ran}"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.returncode, (ran.read_text() if ran.exists() else "") + result.stderr


@pytest.mark.parametrize("migrate", [None, "", "true"], ids=["unset", "empty", "true"])
def test_the_entrypoint_migrates_then_serves_by_default(
    entrypoint: Path, tmp_path: Path, migrate: str | None
) -> None:
    assert run_entrypoint(entrypoint, tmp_path, migrate) == (0, "alembic upgrade head\nserve\n")


def test_migrate_on_start_false_only_serves(entrypoint: Path, tmp_path: Path) -> None:
    assert run_entrypoint(entrypoint, tmp_path, "false") == (0, "serve\n")


@pytest.mark.parametrize("migrate", ["no", "False", "0"])
def test_a_bad_migrate_on_start_stops_the_container_saying_why(
    entrypoint: Path, tmp_path: Path, migrate: str
) -> None:
    status, output = run_entrypoint(entrypoint, tmp_path, migrate)
    assert status != 0
    # Neither migrated nor served.
    assert output == f"MIGRATE_ON_START must be true or false, not '{migrate}'\n"
