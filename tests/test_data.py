import gzip
from pathlib import Path

import numpy as np
import pytest

from effdl_lib import data
from conftest import needs_data


def test_registry_covers_the_datasets():
    names = set(data.REGISTRY)
    for required in ("mnist/train-images", "fashion/test-labels", "notmnist/test-images",
                     "cifar10/jpeg", "tinyshakespeare", "wikitext2/valid", "wikitext2/test",
                     "genomes/chr21-HG02102", "genomes/chr21-NA20787"):
        assert required in names
    assert all(len(f.sha256) == 64 for f in data.REGISTRY.values())


def test_unknown_name_lists_choices():
    with pytest.raises(KeyError, match="known:.*mnist/train-images"):
        data.path("mnist/val-images")


def _fake_root(tmp_path, monkeypatch, content: bytes):
    monkeypatch.setenv("EFFDL_DATA", str(tmp_path))
    target = tmp_path / data.REGISTRY["tinyshakespeare"].relpath
    target.parent.mkdir(parents=True)
    target.write_bytes(content)
    return target


def test_corrupt_file_names_file_and_checksums(tmp_path, monkeypatch):
    target = _fake_root(tmp_path, monkeypatch, b"not shakespeare")
    with pytest.raises(data.DataError) as err:
        data.path("tinyshakespeare")
    msg = str(err.value)
    assert str(target) in msg and data.REGISTRY["tinyshakespeare"].sha256 in msg
    assert "Delete it" in msg
    assert target.read_bytes() == b"not shakespeare"  # nothing is lost


def test_missing_file_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFDL_DATA", str(tmp_path))
    with pytest.raises(data.DataError) as err:
        data.path("genomes/chr21-HG02102")  # no official single-sample download
    msg = str(err.value)
    assert "missing file" in msg and "EFFDL_DATA" in msg
    assert data.REGISTRY["genomes/chr21-HG02102"].sha256 in msg


def test_good_file_verifies(tmp_path, monkeypatch):
    content = b"hello"
    monkeypatch.setitem(data.REGISTRY, "tinyshakespeare", data.REGISTRY["tinyshakespeare"].__class__(
        "tinyshakespeare", "tinyshakespeare/input.txt",
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "test"))
    target = _fake_root(tmp_path, monkeypatch, content)
    assert data.path("tinyshakespeare") == target


def test_read_idx_round_trip_and_bad_header(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    good = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(good, "wb") as fh:
        fh.write(header + arr.tobytes())
    assert np.array_equal(data.read_idx(good), arr)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(data.DataError, match="bad magic"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(header + arr.tobytes()[:-1])
    with pytest.raises(data.DataError, match="holds 23 bytes"):
        data.read_idx(short)


@needs_data
def test_real_mnist_shapes():
    x, y = data.load_image_set("mnist", "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert set(np.unique(y)) == set(range(10))


def test_relative_data_root_is_taken_from_the_repo(monkeypatch):
    monkeypatch.setenv("EFFDL_DATA", "some/where")
    monkeypatch.chdir("/")
    assert data.data_root() == (data.REPO_ROOT / "some" / "where").resolve()


def test_corrupt_decoded_cache_is_rebuilt_not_trusted(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path))
    target = data.cache_dir() / "demo.npy"
    data.write_cache(target, np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert data.read_cache(target).sum() == 66
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0xFF  # one flipped byte in the payload: np.load would happily read it
    target.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="does not match its checksum"):
        data.read_cache(target)
    Path(str(target) + ".sha256").unlink()
    with pytest.raises(data.DataError):
        data.read_cache(target)  # a cache without its checksum is not trusted either


def test_cifar_cache_corruption_triggers_a_rebuild(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EFFDL_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "_cifar_from_jpeg_tar", lambda tar, split: np.full((2, 32, 32), 7, np.uint8))
    monkeypatch.setattr(data, "path", lambda name, download=True: tmp_path / "fake.tar.gz")
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("EFFDL_DATA", str(tmp_path / "data"))
    jpeg = tmp_path / "data" / data.REGISTRY["cifar10/jpeg"].relpath
    jpeg.parent.mkdir(parents=True)
    jpeg.write_bytes(b"not used: the reader is replaced")
    data._load_cached.cache_clear()
    first = data.cifar10_gray("test")
    cached = tmp_path / "cifar10_test_gray_jpeg.npy"
    assert cached.exists() and first.shape == (2, 32, 32)
    cached.write_bytes(cached.read_bytes()[:-10])  # truncated
    data._load_cached.cache_clear()
    again = data.cifar10_gray("test")
    assert (again == 7).all() and "rebuilding" in capsys.readouterr().out
    data._load_cached.cache_clear()
