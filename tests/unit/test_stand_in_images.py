"""docker/stand-in-images builds a stand-in for every third-party image our files name (but MongoDB and Grafana).

Hosts with no registry (ours) build the compose stacks from these stand-ins; an image added to a Dockerfile or a
compose file without its stand-in would break the compose end-to-end test there, so the two lists are kept equal here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.compose import REPO, load_compose

BUILD = REPO / "docker" / "stand-in-images" / "build.sh"
NO_STAND_IN = {"mongo", "grafana/grafana"}  # neither a Debian package nor a PyPI build: left out by tests/compose/


def third_party_images() -> set[str]:
    images: set[str] = set()
    for compose_file in ("docker-compose-model-registry.yml", "docker-compose-serve.yml"):
        for definition in load_compose(compose_file)["services"].values():
            if "build" not in definition:
                images.add(definition["image"])
    for dockerfile in [REPO / "Dockerfile.base", *REPO.glob("*/Dockerfile*"), *REPO.glob("*/*/Dockerfile*")]:
        if "stand-in-images" in dockerfile.parts:
            continue
        for match in re.finditer(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M):
            if not match.group(1).startswith("$"):
                images.add(match.group(1))
    return images


def stand_ins() -> set[str]:
    listed = subprocess.run([str(BUILD), "--list"], capture_output=True, text=True, timeout=30, check=True)
    return set(listed.stdout.split())


def test_every_third_party_image_has_a_stand_in_but_mongo_and_grafana() -> None:
    needed = {image for image in third_party_images() if image.split(":")[0] not in NO_STAND_IN}
    assert needed, "no third-party image found: the scan is broken"
    assert stand_ins() == needed


def test_stand_in_recipes_exist_and_build_from_the_python_stand_in() -> None:
    text = BUILD.read_text()
    folders = re.findall(r'^\s+"[^"|]+\|([a-z-]+)"$', text, re.M)
    assert folders, "no recipe listed"
    for folder in folders:
        dockerfile = BUILD.parent / folder / "Dockerfile"
        assert dockerfile.exists(), dockerfile
        assert "FROM ${PYTHON_IMAGE}" in dockerfile.read_text(), f"{dockerfile}: build on the Python stand-in"


def test_no_dockerfile_asks_buildkit_for_a_pulled_frontend() -> None:
    """A `# syntax=` line makes BuildKit pull a frontend image, which fails with no registry."""
    for dockerfile in [REPO / "Dockerfile.base", *REPO.glob("**/Dockerfile*")]:
        if ".venv" in Path(dockerfile).parts:
            continue
        assert not re.search(r"^#\s*syntax\s*=", dockerfile.read_text(), re.M | re.I), dockerfile
