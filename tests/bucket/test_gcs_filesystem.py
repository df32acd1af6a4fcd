"""gs:// opens gcsfs' plain JSON-API filesystem with our settings (a fake gcsfs: none is installed
in the project venv; the real one is exercised in tests/integration/gcs)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from oreal.bucket import BucketError
from oreal.bucket.filesystems import open_filesystem


class FakeGCSFileSystem:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeExtended(FakeGCSFileSystem):
    """Stands for gcsfs.GCSFileSystem, the extended class that probes gRPC per bucket."""


@pytest.fixture
def fake_gcsfs(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("gcsfs")
    core = types.ModuleType("gcsfs.core")
    core.GCSFileSystem = FakeGCSFileSystem  # type: ignore[attr-defined]
    package.GCSFileSystem = FakeExtended  # type: ignore[attr-defined]
    package.core = core  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gcsfs", package)
    monkeypatch.setitem(sys.modules, "gcsfs.core", core)


@pytest.mark.usefixtures("fake_gcsfs")
def test_gs_uses_the_plain_json_api_class_without_listing_cache() -> None:
    fs, root, uri = open_filesystem("gs://team/runs/r1/", storage_options={"token": "anon"})
    assert type(fs) is FakeGCSFileSystem
    assert (root, uri) == ("team/runs/r1", "gs://team/runs/r1")
    assert fs.kwargs == {
        "skip_instance_cache": True,
        "use_listings_cache": False,
        "token": "anon",
    }


@pytest.mark.usefixtures("fake_gcsfs")
def test_gs_endpoint_and_storage_options() -> None:
    fs, _root, _uri = open_filesystem(
        "gcs://team/r",
        endpoint="http://gcs.local:4443",
        storage_options={"use_listings_cache": True, "project": "p"},
    )
    assert fs.kwargs["endpoint_url"] == "http://gcs.local:4443"
    assert fs.kwargs["use_listings_cache"] is True and fs.kwargs["project"] == "p"  # options win


def test_gs_without_gcsfs_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # import gcsfs -> ImportError
    monkeypatch.setitem(sys.modules, "gcsfs.core", None)
    with pytest.raises(BucketError, match="needs the gcsfs package"):
        open_filesystem("gs://team/r")
