"""Procedural generators: determinism, split streams, mask contract, geometry and option checking."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from deqslots.data import DATASETS, SPLITS, dataset_options, generate_batch, make_dataset


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_item_shapes_dtypes_and_range(name, resolution):
    data = make_dataset(name, "train", resolution=resolution)
    for index in (0, 1, 99_999):
        item = data[index]
        assert set(item) == {"image", "mask"}
        image, mask = item["image"], item["mask"]
        assert image.shape == (3, resolution, resolution) and image.dtype == torch.float32
        assert mask.shape == (resolution, resolution) and mask.dtype == torch.int64
        assert image.is_contiguous() and mask.is_contiguous()
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert torch.isfinite(image).all()


@pytest.mark.parametrize("name", DATASETS)
def test_same_seed_and_index_give_identical_items(name):
    a = make_dataset(name, "val", resolution=48, seed=7)
    b = make_dataset(name, "val", resolution=48, seed=7, size=5)
    for index in (0, 3, 4):
        assert torch.equal(a[index]["image"], b[index]["image"])
        assert torch.equal(a[index]["mask"], b[index]["mask"])
    # Order of access does not matter: there is no hidden stream state.
    later_first = a[4]["image"].clone()
    a[0]
    assert torch.equal(a[4]["image"], later_first)


@pytest.mark.parametrize("name", DATASETS)
def test_item_alone_equals_item_in_batch(name):
    indices = [5, 0, 17, 5]
    images, masks = generate_batch(name, indices, split="test", resolution=32, seed=3)
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 32, 32)
    data = make_dataset(name, "test", resolution=32, seed=3)
    for b, index in enumerate(indices):
        assert torch.equal(images[b], data[index]["image"])
        assert torch.equal(masks[b], data[index]["mask"])
    assert torch.equal(images[0], images[3])


@pytest.mark.parametrize("name", DATASETS)
def test_splits_seeds_and_indices_are_distinct_streams(name):
    items = {
        split: torch.stack([make_dataset(name, split, resolution=32)[i]["image"] for i in range(4)])
        for split in SPLITS
    }
    for i, s in enumerate(SPLITS):
        for t in SPLITS[i + 1 :]:
            assert not torch.equal(items[s], items[t]), (s, t)
    reseeded = make_dataset(name, "train", resolution=32, seed=1)
    other_seed = torch.stack([reseeded[i]["image"] for i in range(4)])
    assert not torch.equal(items["train"], other_seed)
    assert not torch.equal(items["train"][0], items["train"][1])


@pytest.mark.parametrize("name", DATASETS)
def test_mask_ids_are_contiguous_with_pixels_and_background(name):
    data = make_dataset(name, "train", resolution=64)
    counts = []
    for index in range(60):
        mask = data[index]["mask"]
        ids = torch.unique(mask).tolist()
        k = max(ids)
        assert ids == list(range(k + 1)), (index, ids)  # 0..K, each with >= 1 pixel
        assert 1 <= k <= data.max_objects
        counts.append(k)
    assert data.max_objects == dataset_options(name)["max_objects"]
    # The object count varies over the configured range rather than sticking to one value.
    assert len(set(counts)) >= 3


def test_shapes_mask_is_exactly_the_non_background_pixels():
    for background in ("random", "black"):
        data = make_dataset("shapes", "val", resolution=64, background=background)
        for index in range(40):
            image, mask = data[index]["image"], data[index]["mask"]
            bg = image[:, mask == 0]
            colour = bg[:, :1]
            assert torch.equal(bg, colour.expand_as(bg))  # flat background
            if background == "black":
                assert float(colour.abs().max()) == 0.0
            differs = (image != colour[:, :, None]).any(dim=0)
            assert torch.equal(differs, mask > 0)
            # Each object is drawn in one flat colour.
            for k in range(1, int(mask.max()) + 1):
                pixels = image[:, mask == k]
                assert torch.equal(pixels, pixels[:, :1].expand_as(pixels))


def test_shapes_heavy_occlusion_renumbers_hidden_objects():
    data = make_dataset("shapes", "train", resolution=32, min_objects=25, max_objects=25)
    ks = []
    for index in range(20):
        mask = data[index]["mask"]
        ids = torch.unique(mask).tolist()
        assert ids[1:] == list(range(1, max(ids) + 1))
        ks.append(max(ids))
    assert max(ks) <= 25 and min(ks) < 25  # some shapes were hidden and their ids removed


def test_shapes_respects_kinds_and_object_range():
    data = make_dataset("shapes", "train", resolution=32, min_objects=1, max_objects=1, kinds=("square",))
    for index in range(10):
        mask = data[index]["mask"]
        assert int(mask.max()) == 1
        assert int(mask.sum()) >= 4


def _mirror_rows(resolution, fraction):
    return (torch.arange(resolution) + 0.5) / resolution < fraction


def test_clevr_mirror_reflections_share_their_objects_id():
    resolution, fraction = 64, 0.4
    with_refl = make_dataset("clevr-mirror", "train", resolution=resolution)
    without = make_dataset("clevr-mirror", "train", resolution=resolution, reflections=False)
    mirror = _mirror_rows(resolution, fraction)
    images_with_shared_id = 0
    for index in range(25):
        a, b = with_refl[index], without[index]
        reflection = (a["mask"] != b["mask"]) & (a["mask"] > 0)
        # Reflections only ever land in the mirror.
        assert not reflection[~mirror].any()
        assert int(reflection.sum()) > 0
        floor_ids = set(torch.unique(a["mask"][~mirror]).tolist()) - {0}
        reflected_ids = set(torch.unique(a["mask"][reflection]).tolist())
        # Each reflection carries the id of an object standing on the floor.
        assert reflected_ids <= floor_ids, (index, reflected_ids, floor_ids)
        images_with_shared_id += bool(reflected_ids & floor_ids)
        assert torch.equal(a["image"][:, ~mirror], b["image"][:, ~mirror])
    assert images_with_shared_id == 25


def test_clevr_mirror_some_id_is_both_in_mirror_and_on_floor():
    data = make_dataset("clevr-mirror", "test", resolution=64, mirror_fraction=0.35)
    mirror = _mirror_rows(64, 0.35)
    for index in range(20):
        mask = data[index]["mask"]
        upper = set(torch.unique(mask[mirror]).tolist()) - {0}
        lower = set(torch.unique(mask[~mirror]).tolist()) - {0}
        assert upper & lower
        assert 1 <= int(mask.max()) <= 6


def test_stacks_blocks_all_visible_and_on_the_floor_half():
    data = make_dataset("stacks", "train", resolution=64, min_objects=4, max_objects=4)
    for index in range(20):
        mask = data[index]["mask"]
        assert int(mask.max()) == 4
        # Block 1 is a bottom block: it reaches lower in the image than the last one.
        rows = torch.arange(64)[:, None].expand(64, 64)
        assert rows[mask == 1].max() > rows[mask == 4].max()
    single = make_dataset("stacks", "train", resolution=64, max_towers=1, min_objects=3, max_objects=3)
    for index in range(10):
        mask = single[index]["mask"]
        cols = torch.nonzero(mask > 0)[:, 1]
        assert int(cols.max() - cols.min()) < 40  # one tower is narrow


def test_default_sizes_and_indexing():
    assert len(make_dataset("shapes")) == 100_000
    assert len(make_dataset("shapes", "val")) == 1_000
    data = make_dataset("stacks", "test", size=3, resolution=32)
    assert len(data) == 3
    assert torch.equal(data[-1]["image"], data[2]["image"])
    assert torch.equal(data[np.int64(1)]["mask"], data[1]["mask"])
    with pytest.raises(IndexError):
        data[3]
    assert len(list(iter(data))) == 3


def test_unknown_name_split_and_option_are_errors_listing_valid_choices():
    with pytest.raises(ValueError, match="valid datasets: shapes, clevr-mirror, stacks, same-hue"):
        make_dataset("clevr")
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        make_dataset("shapes", "validation")
    with pytest.raises(ValueError, match=r"'max_object' \(did you mean 'max_objects'\?\).*valid options: "
                       r"min_objects, max_objects, background, kinds"):
        make_dataset("shapes", max_object=3)
    with pytest.raises(ValueError, match="mirror_fraction"):
        make_dataset("stacks", mirror_fraction=0.3)
    with pytest.raises(ValueError, match="min_objects"):
        make_dataset("shapes", min_objects=5, max_objects=2)
    with pytest.raises(ValueError, match="background"):
        make_dataset("shapes", background="white")
    with pytest.raises(ValueError, match="resolution"):
        make_dataset("shapes", resolution=4)
    with pytest.raises(ValueError, match="seed"):
        make_dataset("shapes", seed=-1)
    with pytest.raises(ValueError, match="size"):
        make_dataset("shapes", size=0)
    with pytest.raises(ValueError, match="max_towers"):
        make_dataset("stacks", max_towers=3)
    with pytest.raises(ValueError, match="unknown option"):
        generate_batch("stacks", [0], resolution=32, colour="red")


def test_procedural_dataset_built_directly_rejects_an_unknown_split():
    # the constructor raised "tuple.index(x): x not in tuple"
    from deqslots.data.procedural import ProceduralDataset

    options = make_dataset("shapes", "test", resolution=16, size=1).options
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*valid splits: train, val, test"):
        ProceduralDataset("shapes", "validation", 16, 1, 0, options)


def test_unit_shape_rejects_an_unknown_kind():
    # any unknown kind was drawn as a heart
    from deqslots.data.shapes import unit_shape

    with pytest.raises(ValueError, match=r"unknown shape kind 'star'; pass one of square, ellipse, triangle, heart"):
        unit_shape("star", np.zeros(3), np.zeros(3), 1.0)
    assert unit_shape("heart", np.zeros(3), np.zeros(3), 1.0).all()


def test_dataset_options_lists_defaults():
    assert dataset_options("clevr-mirror") == {
        "min_objects": 3,
        "max_objects": 6,
        "mirror_fraction": 0.4,
        "reflections": True,
        "one_colour": False,
    }
    opts = dataset_options("shapes")
    opts["max_objects"] = 99  # a fresh dict each call: no shared mutable state
    assert dataset_options("shapes")["max_objects"] == 6


def test_dataset_pickles_and_collates():
    data = make_dataset("clevr-mirror", "val", resolution=32, size=8)
    clone = pickle.loads(pickle.dumps(data))
    assert torch.equal(clone[6]["image"], data[6]["image"])
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 32, 32)


def test_generate_batch_accepts_a_count():
    images, masks = generate_batch("shapes", 3, resolution=32)
    assert torch.equal(images[2], make_dataset("shapes", resolution=32)[2]["image"])
    with pytest.raises(ValueError):
        generate_batch("shapes", [], resolution=32)


def test_same_hue_objects_share_one_hue_and_span_the_same_brightness():
    import colorsys

    data = make_dataset("same-hue", "val", resolution=64, noise=0.0)
    for index in range(20):
        image, mask = data[index]["image"].numpy(), data[index]["mask"].numpy()
        hues, brightness = [], []
        for k in range(1, mask.max() + 1):
            pixels = image[:, mask == k].T
            hsv = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
            hues.append(np.median(hsv[:, 0]))
            if len(pixels) >= 12:  # a sliver of an occluded object shows only part of its ramp
                brightness.append((hsv[:, 2].min(), hsv[:, 2].max()))
        circular = np.abs((np.array(hues) - hues[0] + 0.5) % 1.0 - 0.5)
        assert circular.max() < 0.02, index  # one hue per scene
        for low, high in brightness:
            assert high - low > 0.2, index  # every whole object is shaded over a wide range


def test_same_hue_noise_option():
    clean = make_dataset("same-hue", "test", resolution=32, noise=0.0)[3]["image"]
    noisy = make_dataset("same-hue", "test", resolution=32)[3]["image"]
    assert 0.02 < float((noisy - clean).std()) < 0.04
    with pytest.raises(ValueError, match="noise"):
        make_dataset("same-hue", noise=0.5)
