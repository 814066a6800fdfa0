"""The fsspec filesystem: fsspec's own abstract test suites, run on a real volume."""

import fsspec
import pytest
from fsspec.tests.abstract import AbstractFixtures
from fsspec.tests.abstract.copy import AbstractCopyTests
from fsspec.tests.abstract.get import AbstractGetTests
from fsspec.tests.abstract.open import AbstractOpenTests
from fsspec.tests.abstract.pipe import AbstractPipeTests
from fsspec.tests.abstract.put import AbstractPutTests

from artifacts_core.fsspec_fs import ArtifactsFileSystem


@pytest.fixture(scope="module")
def shared_volume(tmp_path_factory, redis_server, s3_server):
    """One volume for the whole module (fsspec's suites run hundreds of small cases)."""
    import os

    from testbed import TEST_BUCKET

    from artifacts_core.config import profile_config
    from artifacts_core.volume import format_volume, open_volume

    os.environ["ARTIFACTS_S3_ACCESS_KEY_ID"] = s3_server.access_key
    os.environ["ARTIFACTS_S3_SECRET_ACCESS_KEY"] = s3_server.secret_key
    url = f"s3://{TEST_BUCKET}/fsspec?endpoint={s3_server.endpoint}&region={s3_server.region}"
    prefix = "{u_990001_w_1}:"
    format_volume(redis_server.url, url, "fsvol", key_prefix=prefix, require_aof=False, trash_days=0)
    vol = open_volume(redis_server.url, key_prefix=prefix, require_aof=False,
                      config=profile_config(cache_dir=str(tmp_path_factory.mktemp("fscache"))))
    yield vol
    vol.close()


class ArtifactsFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, shared_volume):
        return ArtifactsFileSystem(volume=shared_volume)

    @pytest.fixture
    def fs_join(self):
        import posixpath

        return posixpath.join

    @pytest.fixture
    def fs_path(self, shared_volume, request):
        import re
        import uuid

        safe = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]  # no glob characters
        path = f"/t-{safe}-{uuid.uuid4().hex[:6]}"
        shared_volume.makedirs(path, exist_ok=True)
        return path

    @pytest.fixture
    def supports_empty_directories(self):
        return True


class TestArtifactsCopy(AbstractCopyTests, ArtifactsFixtures):
    pass


class TestArtifactsGet(AbstractGetTests, ArtifactsFixtures):
    pass


class TestArtifactsPut(AbstractPutTests, ArtifactsFixtures):
    pass


class TestArtifactsOpen(AbstractOpenTests, ArtifactsFixtures):
    pass


class TestArtifactsPipe(AbstractPipeTests, ArtifactsFixtures):
    pass


def test_registered_protocol_and_pandas_style_use(shared_volume):
    fs = fsspec.filesystem("artifacts", volume=shared_volume)
    assert isinstance(fs, ArtifactsFileSystem)
    with fs.open("artifacts://data/table.csv", "wb") as f:
        f.write(b"a,b\n1,2\n")
    assert fs.cat("artifacts://data/table.csv") == b"a,b\n1,2\n"
    assert fs.cat_file("/data/table.csv", start=4, end=7) == b"1,2"
    assert fs.info("/data")["type"] == "directory"
    assert fs.ls("/data", detail=False) == ["/data/table.csv"]
    fs.mv("/data/table.csv", "/data/moved.csv")
    assert not fs.exists("/data/table.csv") and fs.exists("/data/moved.csv")


def test_the_registered_protocol_with_a_volume_is_that_volume(shared_volume):
    """``fsspec.filesystem("artifacts", volume=vol)``: paths are inside ``vol``, as before URLs
    with a handle and a workspace existed."""
    fs = fsspec.filesystem("artifacts", volume=shared_volume)
    fs.pipe_file("artifacts://registered/a.txt", b"in the volume")
    assert shared_volume.read_bytes("registered/a.txt") == b"in the volume"
    assert fs.ls("/registered", detail=False) == ["/registered/a.txt"]
