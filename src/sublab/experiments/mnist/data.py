"""Image classification data for the auxiliary-logit experiment: scikit-learn digits, Fashion-MNIST, IDX files.

Every dataset comes back as float32 arrays scaled to [-1, 1] (the paper's ``Normalize((0.5,), (0.5,))``), so
uniform noise in [-1, 1] covers the same input range as real images. IDX is parsed with numpy; a missing or
malformed file is one :class:`SublabError` naming it.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sublab.errors import SublabError

#: Where Debian's ``dataset-fashion-mnist`` package installs its IDX files.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)

#: IDX element types (third magic byte) → numpy big-endian dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: The four files of an MNIST-format dataset, as (split, kind) → accepted stems.
IDX_FILES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


@dataclass(frozen=True)
class ImageData:
    """Flattened images in [-1, 1] and integer labels 0-9, split into train and test."""

    name: str
    train_x: np.ndarray  # [n_train, n_features] float32
    train_y: np.ndarray  # [n_train] int64
    test_x: np.ndarray
    test_y: np.ndarray
    source: str  # where the data came from (files or package)

    @property
    def n_features(self) -> int:
        return int(self.train_x.shape[1])


def parse_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode one IDX array (the MNIST file format): magic, big-endian dimensions, then the values."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise SublabError(f"{source}: not an IDX file (bad magic number)")
    type_code, n_dims = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise SublabError(f"{source}: unknown IDX element type 0x{type_code:02x}")
    header = 4 + 4 * n_dims
    if n_dims == 0 or len(data) < header:
        raise SublabError(f"{source}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=n_dims, offset=4))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise SublabError(f"{source}: IDX header promises {shape} ({expected} bytes of values) but the file holds "
                          f"{len(data) - header} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not."""
    path = Path(path)
    if not path.is_file():
        raise SublabError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise SublabError(f"{path}: corrupt gzip data ({err})") from None
    return parse_idx(raw, str(path))


def find_idx_files(directory: str | Path) -> dict[tuple[str, str], Path]:
    """The four IDX files of an MNIST-format dataset in ``directory`` (``.gz`` or not)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SublabError(f"{directory}: not a directory of IDX files")
    found = {}
    for key, stems in IDX_FILES.items():
        candidates = [directory / f"{stem}{suffix}" for stem in stems for suffix in ("", ".gz")]
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            raise SublabError(f"{directory}: missing {stems[0]} (or .gz): an MNIST-format dataset has four IDX files")
        found[key] = match
    return found


def scale_pixels(images: np.ndarray, max_value: float) -> np.ndarray:
    """Flatten images and map [0, max_value] to [-1, 1] (float32)."""
    flat = images.reshape(images.shape[0], -1).astype(np.float32)
    return flat / np.float32(max_value) * 2 - 1


def load_idx_dir(directory: str | Path, name: str | None = None) -> ImageData:
    """An MNIST-format dataset (e.g. MNIST, Fashion-MNIST, KMNIST) from its four IDX files."""
    files = find_idx_files(directory)
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[(split, "images")], arrays[(split, "labels")]
        images_path, labels_path = files[(split, "images")], files[(split, "labels")]
        if images.ndim != 3:
            raise SublabError(f"{images_path}: expected a 3-d image array, found shape {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise SublabError(f"{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for "
                              f"{images.shape[0]} images in {images_path.name}")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise SublabError(f"{labels_path}: labels must be 0-9, found {int(labels.min())}-{int(labels.max())}")
    return ImageData(
        name=name or Path(directory).name,
        train_x=scale_pixels(arrays[("train", "images")], 255.0),
        train_y=arrays[("train", "labels")].astype(np.int64),
        test_x=scale_pixels(arrays[("test", "images")], 255.0),
        test_y=arrays[("test", "labels")].astype(np.int64),
        source=str(Path(directory).resolve()),
    )


def load_digits_data(n_train: int = 1200, split_seed: int = 0) -> ImageData:
    """scikit-learn's bundled 8×8 digits (1,797 images, no download): ``n_train`` for training, the rest to test.

    The split is fixed by ``split_seed`` (not the run seed), so every run is scored on the same test images.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(split_seed).permutation(len(bunch.target))
    images, labels = bunch.images[order], bunch.target[order].astype(np.int64)
    x = scale_pixels(images, 16.0)
    return ImageData("digits", x[:n_train], labels[:n_train], x[n_train:], labels[n_train:],
                     source="sklearn.datasets.load_digits")


def fashion_mnist_dir() -> Path:
    """Where Fashion-MNIST's IDX files are: ``$SUBLAB_FASHION_MNIST`` or Debian's package folder."""
    options = [os.environ["SUBLAB_FASHION_MNIST"]] if os.environ.get("SUBLAB_FASHION_MNIST") else []
    options += list(FASHION_MNIST_DIRS)
    for option in options:
        if Path(option).is_dir():
            return Path(option)
    raise SublabError("dataset 'fashion-mnist': IDX files not found in " + ", ".join(options) +
                      " (install Debian's package: apt-get install dataset-fashion-mnist; or set "
                      "SUBLAB_FASHION_MNIST, or use --dataset idx:DIR)")


DATASETS = ("digits", "fashion-mnist", "idx:DIR")


def load_image_data(name: str) -> ImageData:
    """Load a dataset by name: ``digits``, ``fashion-mnist`` or ``idx:DIR`` (any four MNIST-format IDX files)."""
    if name == "digits":
        return load_digits_data()
    if name == "fashion-mnist":
        return load_idx_dir(fashion_mnist_dir(), name="fashion-mnist")
    if name.startswith("idx:"):
        directory = name[4:]
        if not directory:
            raise SublabError("dataset 'idx:': give a directory, e.g. idx:~/data/mnist")
        return load_idx_dir(Path(directory).expanduser())
    raise SublabError(f"dataset '{name}': choose one of {', '.join(DATASETS)}")
