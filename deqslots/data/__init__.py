"""Data for object-centric learning: procedural multi-object generators and on-disk loaders.

Procedural datasets (no download needed) are made with :func:`make_dataset` or rendered in bulk with
:func:`generate_batch`; real data is read with :class:`ImageFolderDataset`, :class:`HDF5Dataset`,
:class:`MultiObjectTFRecord` (the Multi-Object Datasets' TFRecords, streamed), :class:`CocoDataset` and
:class:`ShapeStacksDataset` (:mod:`deqslots.data.sources` lists the ``--data`` forms; :func:`convert`
writes any of them to HDF5).
Every dataset yields dicts ``{"image": float32 [3, H, W] in [0, 1], "mask": int64 [H, W]}`` with mask
id 0 = background (the mask is absent when a loader is given none).

Examples:
    >>> from deqslots.data import DATASETS, make_dataset
    >>> DATASETS
    ('shapes', 'clevr-mirror', 'stacks', 'same-hue')
    >>> make_dataset("clevr-mirror", "test", resolution=64)[5]["mask"].shape
    torch.Size([64, 64])
"""

from deqslots.data.coco import CocoDataset
from deqslots.data.convert import convert
from deqslots.data.errors import DataError
from deqslots.data.hdf5 import HDF5Dataset
from deqslots.data.image_folder import IMAGE_EXTENSIONS, ImageFolderDataset
from deqslots.data.procedural import (
    DATASETS,
    DEFAULT_SIZES,
    SPLITS,
    ProceduralDataset,
    dataset_options,
    generate_batch,
    make_dataset,
)
from deqslots.data.shapestacks import ShapeStacksDataset
from deqslots.data.tfrecord import MultiObjectTFRecord

__all__ = [
    "DATASETS",
    "DEFAULT_SIZES",
    "SPLITS",
    "IMAGE_EXTENSIONS",
    "CocoDataset",
    "DataError",
    "HDF5Dataset",
    "ImageFolderDataset",
    "MultiObjectTFRecord",
    "ProceduralDataset",
    "ShapeStacksDataset",
    "convert",
    "dataset_options",
    "generate_batch",
    "make_dataset",
]
