"""Dataset registry: every file the chapters read, resolved under one data root and
checked against a fixed sha256 before use.

The root is ``$EFFDL_DATA`` (default ``data/``). A missing file is fetched from its
official source when the machine is online; otherwise :class:`DataError` names the
file, the checksum it must have and what to do.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


class DataError(RuntimeError):
    """A data file is missing, corrupt or malformed; the message says what to do."""


@dataclass(frozen=True)
class DataFile:
    name: str            # registry key, e.g. "mnist/train-images"
    relpath: str         # path under the data root
    sha256: str
    source: str          # human-readable provenance
    url: str | None = None          # direct official download, if any
    torchvision: str | None = None  # torchvision dataset class that downloads it


def _mnist_like(prefix: str, folder: str, tv: str, sums: dict[str, str]) -> list[DataFile]:
    out = []
    for split, stem in (("train", "train"), ("test", "t10k")):
        for kind, idx in (("images", "idx3"), ("labels", "idx1")):
            fname = f"{stem}-{kind}-{idx}-ubyte"
            out.append(DataFile(f"{prefix}/{split}-{kind}", f"{folder}/raw/{fname}",
                                sums[fname], f"official {tv} files (uncompressed IDX)",
                                torchvision=tv))
    return out


_NOTMNIST_URL = "https://github.com/davidflanagan/notMNIST-to-MNIST/raw/17823f4/"

REGISTRY: dict[str, DataFile] = {f.name: f for f in [
    *_mnist_like("mnist", "MNIST", "MNIST", {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }),
    *_mnist_like("fashion", "FashionMNIST", "FashionMNIST", {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }),
    DataFile("notmnist/test-images", "notMNIST/t10k-images-idx3-ubyte.gz",
             "70ae9e06201f2827e5b0a3781a3169d735dd2efc69996b9eeaee7f10ed4044d7",
             "notMNIST letters A-J in IDX format (notMNIST-to-MNIST @ 17823f4)",
             url=_NOTMNIST_URL + "t10k-images-idx3-ubyte.gz"),
    DataFile("notmnist/test-labels", "notMNIST/t10k-labels-idx1-ubyte.gz",
             "1fa03836e01c862542f8eb83463bb951bebec6fcb3efa28dad748c6b38a9021b",
             "notMNIST letters A-J in IDX format (notMNIST-to-MNIST @ 17823f4)",
             url=_NOTMNIST_URL + "t10k-labels-idx1-ubyte.gz"),
    DataFile("cifar10/jpeg", "cifar10-jpeg/cifar10_jpeg.tar.gz",
             "576322e1dd853926a0895c9366fb543ef212f9714bb423bfe10d2cfeca751f18",
             "CIFAR-10 as JPEG (quality 75 re-encoding, CIFAR-10-images @ d7d0561); "
             "online, torchvision.datasets.CIFAR10 gives the lossless original"),
    DataFile("tinyshakespeare", "tinyshakespeare/input.txt",
             "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
             "char-rnn @ 6f9487a, data/tinyshakespeare/input.txt",
             url="https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a/data/tinyshakespeare/input.txt"),
    DataFile("wikitext2/valid", "wikitext-2/valid.txt",
             "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
             "pytorch/examples @ 77f55b9, word_language_model/data/wikitext-2",
             url="https://raw.githubusercontent.com/pytorch/examples/77f55b9/word_language_model/data/wikitext-2/valid.txt"),
    DataFile("wikitext2/test", "wikitext-2/test.txt",
             "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
             "pytorch/examples @ 77f55b9, word_language_model/data/wikitext-2",
             url="https://raw.githubusercontent.com/pytorch/examples/77f55b9/word_language_model/data/wikitext-2/test.txt"),
    DataFile("genomes/chr21-HG02102", "genomes/HG02102.vcf.gz",
             "df7a39ed25764897c14da2154fd56b366c8e3d1f73bfa9624721b153b2b99000",
             "1000 Genomes phase 3 (GRCh37), chr21, sample HG02102; official source: the "
             "project's FTP release ALL.chr21.phase3_*.vcf.gz, then select the sample"),
    DataFile("genomes/chr21-NA20787", "genomes/NA20787.vcf.gz",
             "ca41bd684c328b82ef561df48057cf789453958bdb042985dfcdc06f33b62e5a",
             "1000 Genomes phase 3 (GRCh37), chr21, sample NA20787; official source: the "
             "project's FTP release ALL.chr21.phase3_*.vcf.gz, then select the sample"),
    *[DataFile(f"genomes/chr20-fasta{suffix}", f"genomes/ucsc.hg19.chr20.unittest.fasta.gz{ext}", digest,
               "hg19 chr20, real sequence at 9,995,000-11,095,000 only (rest N), bgzipped "
               "(google/nucleus @ 68d3947, nucleus/testdata/)",
               url=f"https://raw.githubusercontent.com/google/nucleus/68d3947/nucleus/testdata/"
                   f"ucsc.hg19.chr20.unittest.fasta.gz{ext}")
      for suffix, ext, digest in [
          ("", "", "c496507c09cc08746b89d03990f9390e95d333d74d0ae838fd62766f068f9943"),
          ("-fai", ".fai", "3cc62926bafa8f397679927070c40e970a414bb21fdb92c46dfb497a7a955032"),
          ("-gzi", ".gzi", "84c658416cc44cc2a230575965422894099652b92e483dec1673017968ebca71")]],
    DataFile("genomes/chr20-giab", "genomes/test_nist.b37_chr20_100kbp_at_10mb.vcf.gz",
             "50cf21fa136216c6aa92d71120d275965cbc0507d82ec1e98800713d92ef3044",
             "GIAB high-confidence calls for NA12878, chr20:10.00-10.10 Mb; every REF matches "
             "the chr20 FASTA (google/nucleus @ 68d3947, nucleus/testdata/)",
             url="https://raw.githubusercontent.com/google/nucleus/68d3947/nucleus/testdata/"
                 "test_nist.b37_chr20_100kbp_at_10mb.vcf.gz"),
]}


#: registry files this process has verified, name -> sha256; a chapter's record stores
#: them so a changed data file marks the record stale.
_READ: dict[str, str] = {}


def files_read() -> dict[str, str]:
    """The registry files read (verified) so far in this process, with their checksums."""
    return dict(sorted(_READ.items()))


def env_path(name: str, default: str) -> Path:
    """A folder from the environment; relative paths are taken from the repository root,
    so they mean the same in a notebook kernel (cwd notebooks/) as in the shell."""
    return (REPO_ROOT / (os.environ.get(name) or default)).resolve()


def data_root() -> Path:
    return env_path("EFFDL_DATA", "data")


def cache_dir() -> Path:
    path = env_path("EFFDL_CACHE", "data/cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}


def _verify(entry: DataFile, path: Path) -> None:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    got = _VERIFIED.get(key) or sha256_of(path)
    if got != entry.sha256:
        raise DataError(
            f"{entry.name}: checksum mismatch for {path}\n"
            f"  expected sha256 {entry.sha256}\n  found    sha256 {got}\n"
            f"The file is corrupt or a different version. Delete it and re-run to "
            f"download it again, or point EFFDL_DATA at a good copy ({entry.source}).")
    _VERIFIED[key] = got


def _download(entry: DataFile, root: Path) -> None:
    if entry.torchvision:
        import torchvision.datasets as tvd
        getattr(tvd, entry.torchvision)(str(root), download=True)
        return
    if not entry.url:
        raise OSError("no automatic download for this file")
    target = root / entry.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(entry.url, timeout=60) as resp, open(tmp, "wb") as out:
        shutil.copyfileobj(resp, out)
    tmp.replace(target)


def path(name: str, download: bool = True) -> Path:
    """Return the verified local path of registry file ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown data file {name!r}; known: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    root = data_root()
    target = root / entry.relpath
    if not target.exists() and download:
        try:
            _download(entry, root)
        except Exception as exc:  # offline, read-only root, no official URL...
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "the download did not produce it"
    if not target.exists():
        raise DataError(
            f"{entry.name}: missing file {target}\n  expected sha256 {entry.sha256}\n"
            f"  source: {entry.source}\n  automatic download failed ({reason if download else 'disabled'}).\n"
            f"Set EFFDL_DATA to a folder that holds {entry.relpath} (on the build machines: "
            f"EFFDL_DATA=../shared/data), or connect to the network and re-run.")
    _verify(entry, target)
    _READ[entry.name] = entry.sha256
    return target


# ---------------------------------------------------------------- readers

def read_idx(file: Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a uint8 array, checking its header."""
    opener = gzip.open if str(file).endswith(".gz") else open
    with opener(file, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{file}: not an unsigned-byte IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{file}: IDX header says {dims} but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_image_set(prefix: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n,28,28], labels int64 [n]) for mnist, fashion or notmnist.

    Read once per process and data root: transfer sets are drawn from the same file for
    every seed. The arrays are read-only so a caller cannot change the shared copy."""
    return _load_image_set(str(data_root()), prefix, split)


@functools.lru_cache(maxsize=8)
def _load_image_set(root: str, prefix: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(path(f"{prefix}/{split}-images"))
    labels = read_idx(path(f"{prefix}/{split}-labels")).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{prefix}/{split}: {len(images)} images but {len(labels)} labels")
    labels.flags.writeable = False
    return images, labels


def cifar10_gray(split: str = "train") -> np.ndarray:
    """CIFAR-10 images as grayscale uint8 [n,32,32] (ITU-R 601 luma), cached as .npy."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    use_jpeg = (data_root() / REGISTRY["cifar10/jpeg"].relpath).exists()
    # Keyed by source: the JPEG copy is lossy, torchvision's download is not.
    cached = cache_dir() / f"cifar10_{split}_gray_{'jpeg' if use_jpeg else 'torchvision'}.npy"
    if use_jpeg:
        _READ["cifar10/jpeg"] = REGISTRY["cifar10/jpeg"].sha256  # the cache derives from it
    if cached.exists():
        try:
            return _load_cached(str(cached))
        except DataError as err:  # a corrupt cache is rebuilt, never trusted
            print(f"warning: {err}; rebuilding it")
            cached.unlink(missing_ok=True)
    if use_jpeg:
        arrays = _cifar_from_jpeg_tar(path("cifar10/jpeg"), split)
    else:
        try:
            arrays = _cifar_from_torchvision(split)
        except Exception:
            path("cifar10/jpeg", download=False)  # raises DataError: what to do
            raise
    write_cache(cached, arrays)
    return _load_cached(str(cached))


def write_cache(target: Path, arrays: np.ndarray) -> None:
    """Save ``arrays`` as .npy with a sidecar sha256, atomically: a killed run never
    leaves half a cache, and a cache changed on disk is detected on load."""
    tmp = target.with_suffix(".part.npy")
    np.save(tmp, arrays)
    Path(str(target) + ".sha256").write_text(sha256_of(tmp) + "\n")
    tmp.replace(target)


def read_cache(target: Path) -> np.ndarray:
    """Load a cache written by :func:`write_cache`; DataError if it is corrupt."""
    sidecar = Path(str(target) + ".sha256")
    want = sidecar.read_text().strip() if sidecar.exists() else None
    if want is None or sha256_of(target) != want:
        raise DataError(f"cache file {target} does not match its checksum")
    try:
        return np.load(target)
    except (ValueError, OSError) as exc:
        raise DataError(f"cache file {target} cannot be read: {exc}") from exc


@functools.lru_cache(maxsize=4)
def _load_cached(file: str) -> np.ndarray:
    arrays = read_cache(Path(file))
    arrays.flags.writeable = False
    return arrays


def _cifar_from_jpeg_tar(tar_path: Path, split: str) -> np.ndarray:
    from PIL import Image
    images = []
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and member.name.endswith(".jpg") and split in parts[:-2]:
                data = tar.extractfile(member).read()
                images.append((member.name, np.asarray(Image.open(io.BytesIO(data)).convert("L"))))
    if not images:
        raise DataError(f"{tar_path}: no {split}/*.jpg members found")
    images.sort(key=lambda item: item[0])  # archive order is not guaranteed
    return np.stack([img for _, img in images])


def _cifar_from_torchvision(split: str) -> np.ndarray:
    import torchvision.datasets as tvd
    ds = tvd.CIFAR10(str(data_root()), train=(split == "train"), download=True)
    rgb = ds.data.astype(np.float32)
    return np.round(rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
