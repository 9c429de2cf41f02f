"""resnext_data: the readers give back the images as written, refuse bad files by name, and the
batch order is a function of (seed, epoch) alone."""

import os
import pickle

import numpy as np
import pytest

from resnext_data import ArraySplit, DataError, Pipeline, channel_stats, load_dataset
from resnext_data.synthetic import tar_gz, write_cifar, write_image_folder
from resnext_spec.errors import ResNeXtError

KINDS = ["cifar10-bin", "cifar100-bin", "cifar10-py", "cifar100-py"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar.gz"])
def test_cifar_reads_back_the_images_and_fine_labels_written(kind, packed, tmp_path):
    folder, (train_x, train_y, _), (test_x, test_y, _) = write_cifar(str(tmp_path), kind)
    path = tar_gz(folder, str(tmp_path / "cifar.tar.gz")) if packed else str(tmp_path)
    ds = load_dataset(path)
    assert ds.name == kind.split("-")[0] and ds.num_classes == (100 if "100" in kind else 10)
    np.testing.assert_array_equal(ds.train.images(np.arange(len(train_y))), train_x)
    np.testing.assert_array_equal(ds.train.labels, train_y)
    np.testing.assert_array_equal(ds.test.images(np.arange(len(test_y))), test_x)
    np.testing.assert_array_equal(ds.test.labels, test_y)


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    folder, *_ = write_cifar(str(tmp_path), "cifar10-py")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(os.path.join(folder, "data_batch_2"), "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_2.*refused global"):
        load_dataset(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:-100]), r"data_batch_3\.bin: .* not a whole number"),
        (lambda f: f.unlink(), r"data_batch_3\.bin: missing"),
        (lambda f: f.write_bytes(b""), r"data_batch_3\.bin"),
        (
            lambda f: f.write_bytes(bytes([10]) + f.read_bytes()[1:]),
            r"data_batch_3\.bin: label 10 out of range",
        ),
    ],
    ids=["truncated", "missing", "empty", "bad_label"],
)
def test_damaged_binary_cifar_is_an_error_naming_the_file(damage, message, tmp_path):
    folder, *_ = write_cifar(str(tmp_path), "cifar10-bin")
    damage(tmp_path / folder / "data_batch_3.bin")
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path)


def test_truncated_python_batch_and_truncated_archive_are_errors_naming_the_file(tmp_path):
    folder, *_ = write_cifar(str(tmp_path / "a"), "cifar100-py")
    archive = tar_gz(folder, str(tmp_path / "c100.tar.gz"))
    data = open(os.path.join(folder, "train"), "rb").read()
    with open(os.path.join(folder, "train"), "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cifar-100-python/train: not a CIFAR python batch"):
        load_dataset(tmp_path / "a")
    blob = open(archive, "rb").read()
    with open(archive, "wb") as f:
        f.write(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"c100\.tar\.gz: truncated or corrupt"):
        load_dataset(archive)


def test_unknown_paths_are_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not a dataset this reads"):
        load_dataset(tmp_path)


def test_image_folder_reads_classes_resizes_and_names_a_broken_image(tmp_path):
    root = write_image_folder(str(tmp_path))
    ds = load_dataset(root, image_size=16, resize=20)
    assert ds.classes == ["cat", "dog", "emu"] and ds.num_classes == 3 and ds.crop == 16
    assert len(ds.train) == len(ds.test) == 9
    np.testing.assert_array_equal(ds.train.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert ds.train.images(np.arange(4)).shape == (4, 20, 20, 3)  # shorter side 20, centre square
    x, y = next(Pipeline(ds.train, 4, train=True, mean=[0.5] * 3, std=[0.25] * 3, crop=16).epoch(0))
    assert x.shape == (4, 16, 16, 3) and x.dtype == np.float32
    with open(os.path.join(root, "train", "dog", "1.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"dog/1\.png: not a readable image"):
        ds.train.images(np.array([4]))
    os.makedirs(os.path.join(root, "val", "yak"))
    with pytest.raises(DataError, match="classes not in train/: yak"):
        load_dataset(root)


def _split(n=10, size=4):
    images = np.arange(n * size * size * 3, dtype=np.int64).reshape(n, size, size, 3) % 251
    return ArraySplit(images.astype(np.uint8), np.arange(n) % 3)


def test_same_seed_same_batches_and_each_image_once_per_epoch():
    split = _split()
    make = lambda seed: Pipeline(split, 3, train=True, mean=[0] * 3, std=[1] * 3, crop=4, pad=1, seed=seed)  # noqa: E731
    a, b, c = (list(make(s).epoch(2)) for s in (7, 7, 8))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))
    assert len(a) == 3  # 10 images, batch 3: the last partial batch is dropped in training
    # resuming in mid-epoch gives the tail of the same epoch
    tail = list(make(7).epoch(2, start=1))
    np.testing.assert_array_equal(tail[0][0], a[1][0])


def test_data_parallel_shards_put_together_are_the_one_worker_batches():
    split = _split(n=13)
    make = lambda shard: Pipeline(  # noqa: E731
        split, 4, train=True, mean=[0] * 3, std=[1] * 3, crop=4, pad=1, seed=5, shard=shard
    )
    whole = list(make((0, 1)).epoch(1))
    for world in (2, 4):
        parts = [list(make((rank, world)).epoch(1)) for rank in range(world)]
        assert all(len(p) == len(whole) == 3 for p in parts)
        for b, (x, y) in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([p[b][0] for p in parts]), x)
            np.testing.assert_array_equal(np.concatenate([p[b][1] for p in parts]), y)
    with pytest.raises(ResNeXtError, match="does not split evenly over 3 workers"):
        make((0, 3))
    with pytest.raises(ResNeXtError, match="rank must be in"):
        make((2, 2))


def test_training_augmentation_is_pad_crop_flip_of_the_original():
    split = _split(n=4, size=4)
    pipe = Pipeline(split, 4, train=True, mean=[0] * 3, std=[1] * 3, crop=4, pad=2, seed=3)
    order, offsets, flips = pipe._draws(0, 4)
    ((x, y),) = list(pipe.epoch(0))
    for k, i in enumerate(order):
        padded = np.zeros((8, 8, 3), np.uint8)
        padded[2:6, 2:6] = split.data[i]
        top, left = offsets[i]
        want = padded[top : top + 4, left : left + 4]
        want = want[:, ::-1] if flips[i] else want
        np.testing.assert_allclose(x[k], want / 255.0, rtol=1e-6)
        assert y[k] == split.labels[i]


def test_evaluation_is_in_order_centred_and_keeps_the_last_partial_batch():
    split = _split(n=5, size=6)
    batches = list(Pipeline(split, 2, train=False, mean=[0] * 3, std=[1] * 3, crop=4, pad=4).epoch(9))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    np.testing.assert_allclose(batches[2][0][0], split.data[4, 1:5, 1:5] / 255.0, rtol=1e-6)


def test_channel_stats_of_a_hand_made_split():
    # channel 0: half the pixels 0, half 255 -> mean 0.5, std 0.5; channel 1 constant 51 -> 0.2, 0
    images = np.zeros((2, 2, 2, 3), np.uint8)
    images[0, ..., 0] = 255
    images[..., 1] = 51
    mean, std = channel_stats(ArraySplit(images, np.zeros(2, np.int64)))
    np.testing.assert_allclose(mean, [0.5, 0.2, 0.0], atol=1e-12)
    np.testing.assert_allclose(std, [0.5, 0.0, 0.0], atol=1e-7)
