"""Downloads without the internet: local files served through file:// URLs and a fake opener."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import pytest

from vaekit.data import SourceSettings, load_data
from vaekit.data import download as dl
from vaekit.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="shared datasets not present")
LABELS = "t10k-labels-idx1-ubyte.gz"


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A local copy of the MNIST files to download from."""
    folder = tmp_path / "mirror"
    shutil.copytree(SHARED / "mnist", folder)
    return folder


def test_official_checksums_match_the_shared_files():
    for name in ("mnist", "fashion-mnist"):
        for file_name, md5 in dl.CHECKSUMS[name].items():
            assert dl.md5sum(SHARED / name / file_name) == md5


def test_fetch_verifies_and_renames(mirror, tmp_path):
    dest = tmp_path / "out" / LABELS
    dl.fetch_file([(mirror / LABELS).as_uri()], dest, dl.CHECKSUMS["mnist"][LABELS])
    assert dest.read_bytes() == (mirror / LABELS).read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [LABELS]  # no temporary file left


def test_checksum_mismatch_is_refused_and_nothing_is_kept(mirror, tmp_path):
    tampered = bytearray((mirror / LABELS).read_bytes())
    tampered[100] ^= 1
    (mirror / LABELS).write_bytes(bytes(tampered))
    dest = tmp_path / "out" / LABELS
    with pytest.raises(DataError, match=f"checksum mismatch for {LABELS}.*refusing"):
        dl.fetch_file([(mirror / LABELS).as_uri()], dest, dl.CHECKSUMS["mnist"][LABELS])
    assert list(dest.parent.iterdir()) == []


def test_a_bad_mirror_falls_through_to_a_good_one(mirror, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / LABELS).write_bytes(b"garbage")
    dest = tmp_path / "out" / LABELS
    urls = [(tmp_path / "nowhere" / LABELS).as_uri(), (bad / LABELS).as_uri(), (mirror / LABELS).as_uri()]
    dl.fetch_file(urls, dest, dl.CHECKSUMS["mnist"][LABELS])
    assert dl.md5sum(dest) == dl.CHECKSUMS["mnist"][LABELS]


def test_load_data_downloads_missing_files(mirror, tmp_path, monkeypatch):
    monkeypatch.setitem(dl.MIRRORS, "mnist", [mirror.as_uri() + "/"])
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    shutil.copy(mirror / "train-labels-idx1-ubyte.gz", root / "mnist")  # one file already there
    splits = load_data("mnist", settings=SourceSettings(data_dir=str(root), download=True))
    assert len(splits.test) == 10000
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(dl.CHECKSUMS["mnist"])


def test_offline_says_what_to_place_where(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as err:
        load_data("fashion-mnist", settings=SourceSettings(data_dir=str(tmp_path), download=True))
    message = str(err.value)
    assert "\n" not in message and "offline" in message
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "fashion-mnist") in message
    assert not any((tmp_path / "fashion-mnist").iterdir())


def test_unknown_dataset_download(tmp_path):
    with pytest.raises(DataError, match="no download known"):
        dl.download_dataset("cifar10", tmp_path)
