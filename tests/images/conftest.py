"""Fixtures of the image tests: images built from images/*/Dockerfile by scripts/build_images.sh
(buildah, as root; a Debian base made with mmdebstrap). scripts/install_system_tools.sh installs
buildah and mmdebstrap (scripts/test.sh runs it)."""

from __future__ import annotations

import pytest
from image_root import OPERATOR_IMAGE, build


@pytest.fixture(scope="session")
def operator_image() -> str:
    build("base", "operator")
    return OPERATOR_IMAGE
