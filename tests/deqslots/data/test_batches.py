"""Generated data with generator options on the command line: NAME@KEY=VALUE,..."""

from __future__ import annotations

import pytest
import torch

from deqslots.data.batches import BatchStream, procedural_data
from deqslots.data import generate_batch


def test_options_reach_the_generator():
    stream = BatchStream("same-hue@min_objects=6,max_objects=8,noise=0.0", "val", 32, 4, seed=3)
    batch = stream.batch(1)
    images, masks = generate_batch("same-hue", [4, 5, 6, 7], "val", 32, 3, min_objects=6, max_objects=8, noise=0.0)
    assert torch.equal(batch["image"], images) and torch.equal(batch["mask"], masks)
    assert int(masks.amax(dim=(1, 2)).min()) >= 5  # six or more drawn; occlusion may hide one
    assert torch.equal(BatchStream("shapes", "val", 32, 2, 0).batch(0)["image"],
                       BatchStream("shapes@", "val", 32, 2, 0).batch(0)["image"])


def test_parsing():
    assert procedural_data("shapes@background=black,max_objects=3") == (
        "shapes", {"background": "black", "max_objects": 3})
    assert procedural_data("stacks") == ("stacks", {})
    assert procedural_data("folder:images") is None


@pytest.mark.parametrize("data, match", [
    ("same-hue@max_object=8", "did you mean 'max_objects'"),
    ("same-hue@8", "KEY=VALUE"),
    ("same-hue@min_objects=9,max_objects=8", "min_objects"),
])
def test_bad_options(data, match):
    with pytest.raises(ValueError, match=match):
        BatchStream(data, "val", 32, 2, 0)
