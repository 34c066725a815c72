"""The Kubernetes deployment on paper (deploy/): its Helm values use only keys the dagster chart 1.13 declares,
with the types it declares, name only settings the project has, and its image is pinned.

No Kubernetes runs here, so the chart is not rendered. The schema below was written by hand from the chart's
values models in dagster-io/dagster (helm/dagster/schema/schema/charts/dagster/values.py and its subschema
run_launcher.py, daemon.py, postgresql.py, concurrency.py, dagster_user_deployments/subschema/user_deployments.py):
the top-level keys, and for the blocks these values set, their keys (extra keys forbidden where the chart forbids
them) and types. It catches a misspelt or misplaced key and a wrong type, not what the chart's templates do.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest
import yaml

from lakehouse.settings import EXECUTORS, INSTANCES, Settings

DEPLOY = Path(__file__).parents[2] / "deploy"
STR, INT, BOOL, OBJ = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "object"}
NAMED = {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": STR}}}
IMAGE = {
    "type": "object",
    "required": ["repository", "tag", "pullPolicy"],
    "properties": {"repository": STR, "tag": STR, "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}},
}
ENV = {
    "anyOf": [
        {"type": "object", "additionalProperties": STR},
        {"type": "array", "items": {"type": "object", "required": ["name"]}},
    ]
}


def closed(required: list[str], **properties: object) -> dict[str, object]:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": False}


USER_DEPLOYMENT = closed(
    ["name", "image", "port"],
    name=STR, image=IMAGE, dagsterApiGrpcArgs={"type": "array", "items": STR}, codeServerArgs={"type": "array"},
    includeConfigInLaunchedRuns=closed(["enabled"], enabled=BOOL), port=INT, env=ENV, envConfigMaps=NAMED,
    envSecrets=NAMED, annotations=OBJ, nodeSelector=OBJ, affinity=OBJ, tolerations={}, podSecurityContext=OBJ,
    securityContext=OBJ, resources=OBJ, livenessProbe=OBJ, readinessProbe=OBJ, startupProbe=OBJ, labels=OBJ,
    volumeMounts={"type": "array"}, volumes={"type": "array"}, schedulerName=STR,
)  # fmt: skip
K8S_RUN_LAUNCHER = closed(
    ["imagePullPolicy", "loadInclusterConfig", "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes"],
    image=IMAGE, imagePullPolicy={"enum": ["Always", "IfNotPresent", "Never"]}, jobNamespace=STR, loadInclusterConfig=BOOL,
    kubeconfigFile=STR, envConfigMaps=NAMED, envSecrets=NAMED, envVars={"type": "array", "items": STR},
    volumeMounts={"type": "array"}, volumes={"type": "array"}, labels=OBJ, failPodOnRunFailure=BOOL, resources=OBJ,
    schedulerName=STR, securityContext=OBJ,
    runK8sConfig=closed([], containerConfig=OBJ, podSpecConfig=OBJ, podTemplateSpecMetadata=OBJ, jobSpecConfig=OBJ, jobMetadata=OBJ),
)  # fmt: skip
TAG_LIMIT = closed(["key", "limit"], key=STR, value={}, limit=INT)
DAEMON_KEYS = [
    "enabled",
    "image",
    "runCoordinator",
    "heartbeatTolerance",
    "env",
    "envConfigMaps",
    "envSecrets",
    "deploymentLabels",
    "labels",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "annotations",
    "runMonitoring",
    "runRetries",
    "sensors",
    "schedules",
    "schedulerName",
    "volumeMounts",
    "volumes",
]
DAEMON = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{key: {} for key in DAEMON_KEYS},
        "enabled": BOOL,
        "runMonitoring": OBJ,
        "runCoordinator": closed(
            ["enabled", "type", "config"],
            enabled=BOOL,
            type={"enum": ["QueuedRunCoordinator", "CustomRunCoordinator"]},
            config={
                "type": "object",
                "properties": {
                    "queuedRunCoordinator": closed(
                        [],
                        maxConcurrentRuns=INT,
                        tagConcurrencyLimits={"type": "array", "items": TAG_LIMIT},
                        dequeueIntervalSeconds=INT,
                        dequeueNumWorkers=INT,
                        dequeueUseThreads=BOOL,
                    )  # fmt: skip
                },
            },
        ),
    },
}
TOP_LEVEL = [
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "global",
    "retention",
    "additionalInstanceConfig",
]
CHART_VALUES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{key: {} for key in TOP_LEVEL},
        "dagster-user-deployments": {
            "type": "object",
            "required": ["enabled", "enableSubchart", "deployments"],
            "properties": {"enabled": BOOL, "enableSubchart": BOOL, "deployments": {"type": "array", "items": USER_DEPLOYMENT}},
        },
        "runLauncher": closed(
            ["type", "config"],
            type={"enum": ["CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"]},
            config={"type": "object", "properties": {"k8sRunLauncher": K8S_RUN_LAUNCHER, "celeryK8sRunLauncher": OBJ}},
        ),
        "postgresql": {
            "type": "object",
            "required": [
                "enabled",
                "postgresqlHost",
                "postgresqlUsername",
                "postgresqlPassword",
                "postgresqlDatabase",
                "service",
            ],
            "properties": {
                "enabled": BOOL,
                "postgresqlHost": STR,
                "postgresqlUsername": STR,
                "postgresqlPassword": STR,
                "postgresqlDatabase": STR,
                "postgresqlParams": OBJ,
                "postgresqlScheme": STR,
                "service": closed(["port"], port=INT),
            },  # fmt: skip
        },
        "dagsterDaemon": DAEMON,
        "additionalInstanceConfig": OBJ,
    },
}
SETTING_ENVS = {f.metadata["env"] for f in fields(Settings) if f.metadata["env"]}


def values() -> dict[str, object]:
    loaded = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_helm_values_use_only_the_charts_keys_with_its_types() -> None:
    jsonschema.validate(values(), CHART_VALUES)


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        (("runLauncher",), {"type": "K8sRunLaunchr", "config": {}}),  # a misspelt launcher
        (("runLauncher", "config", "k8sRunLauncher", "envSecret"), []),  # a key the chart does not declare
        (("postgresql", "service", "port"), "5432"),  # a wrong type
        (("dagsterWebserver",), None),
    ],
)
def test_the_check_refuses_a_misspelt_key_or_a_wrong_type(where: tuple[str, ...], bad: object) -> None:
    broken = values()
    target: dict[str, object] = broken
    for key in where[:-1]:
        target = target[key]  # type: ignore[assignment]
    if bad is None:
        broken["dagsterWebServer"] = broken.pop("dagsterWebserver")  # the key's case matters
    else:
        target[where[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CHART_VALUES)


def test_the_deployment_sets_only_real_settings_with_values_they_accept() -> None:
    [deployment] = values()["dagster-user-deployments"]["deployments"]  # type: ignore[index]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert {name for name in env if name.startswith("LAKEHOUSE_")} <= SETTING_ENVS
    assert env["LAKEHOUSE_INSTANCE"] in INSTANCES and env["LAKEHOUSE_EXECUTOR"] in EXECUTORS
    Settings.from_texts({f.name: env[f.metadata["env"]] for f in fields(Settings) if f.metadata["env"] in env})
    documented = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
    assert all(f"`{name}`" in documented for name in env)


def test_the_image_is_pinned_and_installs_exactly_the_lock() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+|python@sha256:[0-9a-f]{64}", base), base
    makefile_uv = re.search(r"^UV_VERSION := (\S+)", (DEPLOY.parent / "Makefile").read_text(), re.MULTILINE)
    assert makefile_uv and f"uv=={makefile_uv.group(1)}" in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile and "--no-frozen" not in dockerfile
