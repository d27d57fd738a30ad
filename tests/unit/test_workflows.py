"""The GitHub Actions workflows, checked offline.

Both validate against the vendored GitHub-workflow schema; ci.yml lints and runs `make test` with a
MongoDB service; deploy.yml tests, restarts the serving side over SSH, checks /health for the pushed RUN_ID
and tags it. The shell steps that carry logic (reading RUN_ID, the /health check, the tag) are run here for
real, with a stub `curl` and a local bare repository standing in for the VM and GitHub.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.compose import REPO
from tests.support.jsonschema import check_jsonschema

WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    # PyYAML reads the key `on` as the boolean True (YAML 1.1).
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def step_named(workflow: dict, job: str, fragment: str) -> dict:
    matches = [s for s in steps(workflow, job) if fragment.lower() in s.get("name", "").lower()]
    assert len(matches) == 1, f"one step named like {fragment!r} in {job}, found {len(matches)}"
    return matches[0]


@pytest.mark.parametrize("path", [CI, DEPLOY], ids=lambda p: p.name)
def test_workflow_validates_against_the_github_schema(path: Path) -> None:
    result = check_jsonschema("vendor.github-workflows", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_validation_is_not_vacuous(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    stepz:\n      - run: 'true'\n")
    assert check_jsonschema("vendor.github-workflows", broken).returncode != 0


@pytest.mark.parametrize("path", [CI, DEPLOY], ids=lambda p: p.name)
def test_actions_and_images_are_pinned(path: Path) -> None:
    workflow = load(path)
    for job_name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                _, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{job_name}: pin {step['uses']} by commit SHA"
        for name, service in job.get("services", {}).items():
            assert re.search(r":\d+\.\d+", service["image"]), f"{job_name}: pin service {name}"


def test_ci_lints_and_runs_make_test_with_a_mongodb_service() -> None:
    ci = load(CI)
    assert "push" in ci["on"] and "pull_request" in ci["on"]
    runs = "\n".join(s.get("run", "") for job in ci["jobs"] for s in steps(ci, job))
    assert "ruff check" in runs and "ruff format --check" in runs
    assert "uv sync --frozen" in runs
    test_job = next(job for job in ci["jobs"].values() if any("make test" in s.get("run", "") for s in job["steps"]))
    assert test_job["services"]["mongo"]["image"].startswith("mongo:")
    assert "27017:27017" in test_job["services"]["mongo"]["ports"]
    assert "--health-cmd" in test_job["services"]["mongo"]["options"]
    assert test_job["env"]["PREDICTION_LOG_TEST_MONGODB_URI"].startswith("mongodb://127.0.0.1:27017/")


def test_deploy_triggers_concurrency_and_order() -> None:
    deploy = load(DEPLOY)
    push = deploy["on"]["push"]
    assert push["branches"] == ["main"]
    assert ".env.cloud" in push["paths"] and "server/**" in push["paths"]
    assert deploy["concurrency"]["group"] and deploy["concurrency"]["cancel-in-progress"] is False
    assert deploy["permissions"] == {"contents": "read"}  # the test job cannot write
    assert deploy["jobs"]["deploy"]["permissions"] == {"contents": "write"}  # the tag push, this job only
    assert deploy["jobs"]["deploy"]["needs"] == "test"
    assert any("make test" in s.get("run", "") for s in steps(deploy, "test"))


def test_deploy_restarts_the_serving_side_over_ssh_with_a_pinned_host_key_at_the_tested_commit() -> None:
    deploy = load(DEPLOY)
    identity = step_named(deploy, "deploy", "pinned host key")
    assert identity["env"] == {"SSH_KEY": "${{ secrets.SSH_KEY }}", "SSH_KNOWN_HOSTS": "${{ secrets.SSH_KNOWN_HOSTS }}"}
    assert "known_hosts" in identity["run"]
    for name in ("Restart the serving side", "/health"):
        step = step_named(deploy, "deploy", name)
        assert step["env"]["SSH_HOST"] == "${{ secrets.SSH_HOST }}"
        assert "StrictHostKeyChecking=yes" in step["run"] and "UserKnownHostsFile" in step["run"]
    restart = step_named(deploy, "deploy", "Restart the serving side")["run"]
    assert '"$GITHUB_SHA"' in restart and ".github/deploy/redeploy.sh" in restart
    script = (REPO / ".github" / "deploy" / "redeploy.sh").read_text()
    assert "git pull" not in script, "deploy the tested commit, not whatever main is by then"
    commands = ['git fetch --quiet origin "$sha"', 'git checkout --quiet --detach "$sha"', "make stop-serve",
                "make start-serve env=cloud"]  # fmt: skip
    positions = [script.find(command) for command in commands]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), script
    assert "set -euo pipefail" in script, "a failing step must fail the job"


def test_redeploy_checks_out_exactly_the_given_commit(tmp_path: Path) -> None:
    """redeploy.sh on a stand-in VM clone: main moved on after the tested commit; the tested one is deployed."""
    git = {"GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"}
    (tmp_path / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n[user]\n\tname = t\n\temail = t@t\n")
    env = {**os.environ, **git}
    origin, vm = tmp_path / "origin", tmp_path / "vm"
    run = lambda *a, cwd=None: subprocess.run(a, cwd=cwd, env=env, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q", str(origin))
    (origin / "Makefile").write_text("stop-serve:\n\t@echo stopped\nstart-serve:\n\t@echo started $(env)\n")
    run("git", "add", "Makefile", cwd=origin)
    run("git", "commit", "-qm", "tested", cwd=origin)
    tested = run("git", "rev-parse", "HEAD", cwd=origin).stdout.strip()
    run("git", "clone", "-q", str(origin), str(vm))
    (origin / "later.txt").write_text("pushed after the tests passed\n")
    run("git", "add", "later.txt", cwd=origin)
    run("git", "commit", "-qm", "later", cwd=origin)
    result = subprocess.run(
        ["bash", str(REPO / ".github" / "deploy" / "redeploy.sh"), tested, str(vm)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert run("git", "rev-parse", "HEAD", cwd=vm).stdout.strip() == tested
    assert not (vm / "later.txt").exists() and "started cloud" in result.stdout


# ------------------------------------------------------------------------- shell steps, run for real


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("RUN_ID=0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
        ('RUN_ID="abc123"', "abc123"),
        ("RUN_ID=", ""),
    ],
)
def test_run_id_is_read_from_env_cloud(tmp_path: Path, line: str, expected: str) -> None:
    (tmp_path / ".env.cloud").write_text(f"ENV=cloud\n# RUN_ID=commented-out\n{line}\nS3_BUCKET=b\n")
    output = tmp_path / "github_output"
    script = step_named(load(DEPLOY), "test", "Read RUN_ID")["run"]
    result = _bash(script, tmp_path, {"GITHUB_OUTPUT": str(output)})
    assert result.returncode == 0, result.stderr
    assert output.read_text() == f"run_id={expected}\n"


def test_a_malformed_run_id_stops_the_deployment(tmp_path: Path) -> None:
    (tmp_path / ".env.cloud").write_text("RUN_ID=abc; rm -rf /\n")
    script = step_named(load(DEPLOY), "test", "Read RUN_ID")["run"]
    result = _bash(script, tmp_path, {"GITHUB_OUTPUT": str(tmp_path / "out")})
    assert result.returncode != 0


HEALTH_CHECK = REPO / ".github" / "deploy" / "check-health.sh"


def _health_script(run_id: str) -> str:
    step = step_named(load(DEPLOY), "deploy", "/health")
    assert '"$RUN_ID"' in step["run"] and ".github/deploy/check-health.sh" in step["run"]
    return f"set -- {run_id!r}\n" + HEALTH_CHECK.read_text() if run_id else "set --\n" + HEALTH_CHECK.read_text()


def _stub_curl(tmp_path: Path, answer: str, status: int = 0) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    curl = bin_dir / "curl"
    curl.write_text(f"#!/bin/sh\nprintf '%s' '{answer}'\nexit {status}\n")
    curl.chmod(curl.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HEALTH_RETRIES": "3", "HEALTH_DELAY": "0"}


def test_health_check_passes_when_the_api_serves_the_pushed_run(tmp_path: Path) -> None:
    env = _stub_curl(tmp_path, '{"status": "ok", "model_run_id": "abc123"}')
    result = _bash(_health_script("abc123"), tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_check_fails_when_the_api_serves_another_run(tmp_path: Path) -> None:
    env = _stub_curl(tmp_path, '{"status": "ok", "model_run_id": "abc1234"}')
    result = _bash(_health_script("abc123"), tmp_path, env)
    assert result.returncode == 1
    assert "does not report RUN_ID abc123" in result.stdout


def test_health_check_fails_when_the_api_is_down(tmp_path: Path) -> None:
    env = _stub_curl(tmp_path, "curl: (7) Failed to connect", status=7)
    result = _bash(_health_script(""), tmp_path, env)
    assert result.returncode == 1


def test_deployed_run_id_is_tagged(tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    clone = tmp_path / "clone"
    git = {"GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"}
    (tmp_path / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    env = {**os.environ, **git}
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True, env=env)
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, env=env, capture_output=True)
    (clone / "README.md").write_text("x\n")
    commit = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]
    subprocess.run(["git", "add", "README.md"], cwd=clone, check=True, env=env)
    subprocess.run(commit, cwd=clone, check=True, env=env)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=clone, check=True, env=env, capture_output=True, text=True
    ).stdout.strip()

    script = step_named(load(DEPLOY), "deploy", "Tag the deployed")["run"]
    for run_id, tag in (
        ("abc123", "deploy-abc123"),
        ("abc123", "deploy-abc123"),
        ("", f"deploy-alias-{sha[:12]}"),
    ):
        result = _bash(script, clone, {**git, "RUN_ID": run_id, "GITHUB_SHA": sha})
        assert result.returncode == 0, result.stderr  # the second run re-tags the same RUN_ID
        tags = subprocess.run(
            ["git", "ls-remote", "--tags", str(origin)], check=True, env=env, capture_output=True, text=True
        ).stdout
        assert f"refs/tags/{tag}" in tags
