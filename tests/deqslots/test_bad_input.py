"""Bad input, as a catalogue: one test per entry of docs/bad-input.md table.

Each test feeds one kind of bad input (wrong image shape / channels / dtype, NaN pixels, empty or missing
data, corrupt files, invalid CLI values, checkpoints of another model) and checks the error names the
problem and what to do, or that the documented recovery happens. CLI errors exit with status 2 and one
line on stderr, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from deqslots import SLATE, slate_config_for
from deqslots.slot_attention.autoencoder import SlotAutoencoder
from deqslots.slot_attention.config import config_for
from deqslots.data.batches import BatchStream
from deqslots.training.checkpoint import load_checkpoint
from deqslots.cli import main
from deqslots.data import DataError, HDF5Dataset, ImageFolderDataset
from deqslots.evaluation.evaluate import evaluate
from deqslots.training.config import TrainConfig
from deqslots.training.loop import build_model, train

RES = 16


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    return SlotAutoencoder(config_for("cpu-small", resolution=RES, num_slots=3, variant="IN"))


@pytest.fixture(scope="module")
def slate():
    torch.manual_seed(0)
    return SLATE(slate_config_for("cpu-small", resolution=RES, variant="IN"))


def cli_error(capsys, argv) -> str:
    """Run the CLI expecting a bad-input failure: status 2, one stderr line, no traceback."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def tiny_args(out, *extra):
    return ["train", "--data", "shapes", "--resolution", str(RES), "--num-slots", "3", "--batch-size", "4",
            "--steps", "1", "--eval-batches", "1", "--no-progress", "--threads", "1", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A one-step slot-attention run (train --out DIR) for the checkpoint entries."""
    out = tmp_path_factory.mktemp("runs") / "sa"
    assert main(tiny_args(out)) == 0
    return out


def copy_run(run, tmp_path, name="copy"):
    return shutil.copytree(run, tmp_path / name)


def write_h5(path, **arrays):
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value, chunks=(1, *value.shape[1:]), compression="gzip")
    return path


def images_u8(count=6, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


# --- images given to a model ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["autoencoder", "slate"])
def test_uint8_images_are_refused_with_the_conversion(request, name):
    model = request.getfixturevalue(name)
    images = torch.randint(0, 256, (2, 3, RES, RES), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"floating images in \[0, 1\]; got dtype torch.uint8.*float\(\) / 255"):
        model(images)


def test_0_255_float_images_are_refused(autoencoder):
    images = torch.rand(2, 3, RES, RES) * 255
    with pytest.raises(ValueError, match=r"values in \[0, 1\]; got values in \[.*, 25\d\].*divide by 255"):
        autoencoder(images)


@pytest.mark.parametrize("shape, advice", [
    ((2, 1, RES, RES), r"got \(2, 1, 16, 16\); for grayscale images pass images.expand\(-1, 3, -1, -1\)"),
    ((2, RES, RES, 3), r"got \(2, 16, 16, 3\); these look channels-last: pass images.permute\(0, 3, 1, 2\)"),
    ((3, RES, RES), r"got \(3, 16, 16\); for a single image pass images\[None\]"),
    ((2, 4, RES, RES), r"got \(2, 4, 16, 16\); for RGBA images drop the alpha channel: images\[:, :3\]"),
    ((2, 3, 32, 32), r"got \(2, 3, 32, 32\) \(build the model with config_for\(\.\.\., resolution=R\)"),
])
def test_wrong_image_shape_or_channels_says_how_to_fix_it(autoencoder, shape, advice):
    with pytest.raises(ValueError, match=r"SlotAutoencoder expects images \[batch, 3, 16, 16\] in \[0, 1\]; " + advice):
        autoencoder(torch.rand(*shape))


def test_slate_wrong_resolution_names_the_config(slate):
    with pytest.raises(ValueError, match=r"SLATE expects images \[batch, 3, 16, 16\].*set the config's resolution"):
        slate(torch.rand(2, 3, 32, 32))


def test_float64_images_are_cast_to_the_models_dtype(autoencoder):
    images = torch.rand(2, 3, RES, RES, dtype=torch.float64)
    with torch.no_grad():
        torch.manual_seed(1)
        from_double = autoencoder(images)["recon"]
        torch.manual_seed(1)
        from_float = autoencoder(images.float())["recon"]
    assert from_double.dtype == torch.float32
    assert torch.equal(from_double, from_float)


@pytest.mark.parametrize("name", ["autoencoder", "slate"])
def test_nan_pixels_into_a_model_name_the_samples(request, name):
    images = torch.rand(3, 3, RES, RES)
    images[1, 0, 2, 2] = float("nan")
    images[2, 2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"images with NaN/Inf values in batch sample\(s\) \[1, 2\]"):
        request.getfixturevalue(name)(images)


# --- data on disk -----------------------------------------------------------------------------------------

def test_nan_pixels_in_an_hdf5_file_name_file_key_and_index(tmp_path):
    images = np.random.default_rng(0).random((5, 8, 8, 3)).astype(np.float32)
    images[3, 4, 4, 1] = np.nan
    data = HDF5Dataset(write_h5(tmp_path / "nan.h5", image=images), mask_key=None)
    assert torch.isfinite(data[2]["image"]).all()
    with pytest.raises(DataError, match=r"nan\.h5:image\[3\] holds 1 NaN/Inf pixel values"):
        data[3]


def test_0_255_floats_in_an_hdf5_file_are_refused(tmp_path):
    images = images_u8().astype(np.float32)
    data = HDF5Dataset(write_h5(tmp_path / "f.h5", image=images), mask_key=None)
    with pytest.raises(DataError, match=r"f\.h5:image\[0\] has float pixel values in \[.*\]; float images must be "
                                        r"in \[0, 1\] \(0-255 data: store it as uint8, or divide by 255\)"):
        data[0]


def test_nan_pixels_cannot_come_from_an_image_folder(tmp_path):
    """PNG/JPEG/BMP hold integers: the loader yields finite pixels in [0, 1], 16-bit PNGs included."""
    root = tmp_path / "images"
    root.mkdir()
    ramp = (np.arange(64, dtype=np.float64).reshape(8, 8) * 1000).astype(np.uint16)  # 0 .. 63000
    Image.fromarray(ramp).save(root / "deep.png")
    image = ImageFolderDataset(root, 8)[0]["image"]
    assert torch.isfinite(image).all()
    # bug fixed: PIL's RGB conversion clipped 16-bit values above 255, so this image was nearly all white
    assert image[0].numpy() == pytest.approx(ramp / 65535.0, abs=1e-6)
    assert torch.equal(image[0], image[2])


@pytest.mark.parametrize("layout, message", [
    ("gray", r"has shape \(4, 8, 8\); expected images \[N, H, W, 3\] or \[N, 3, H, W\]"),
    ("rgba", r"has shape \(4, 8, 8, 4\); expected images"),
    ("int16", r"has dtype int16; expected uint8 \(or float in \[0, 1\]\)"),
])
def test_hdf5_images_of_the_wrong_layout_or_dtype(tmp_path, layout, message):
    images = images_u8(4)
    images = {"gray": images[..., 0], "rgba": np.concatenate([images, images[..., :1]], -1),
              "int16": images.astype(np.int16)}[layout]
    with pytest.raises(DataError, match=r"x\.h5:/image " + message):
        HDF5Dataset(write_h5(tmp_path / "x.h5", image=images), mask_key=None)


def test_corrupt_hdf5_file(tmp_path):
    path = write_h5(tmp_path / "ok.h5", image=images_u8(40), mask=np.zeros((40, 8, 8), np.uint8))
    blob = bytearray(path.read_bytes())
    (tmp_path / "half.h5").write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(DataError, match=r"half\.h5: cannot open as HDF5 \(.*truncated file"):
        HDF5Dataset(tmp_path / "half.h5")
    blob[len(blob) // 3: len(blob) // 3 + 3000] = b"\xab" * 3000  # garble compressed chunks mid-file
    (tmp_path / "garbled.h5").write_bytes(bytes(blob))
    data = HDF5Dataset(tmp_path / "garbled.h5")  # the header is intact
    with pytest.raises(DataError, match=r"garbled\.h5:image\[\d+\] cannot be read; the file may be corrupt"):
        for index in range(len(data)):
            data[index]


def test_corrupt_image_file_in_a_folder_via_the_cli(tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    for i, image in enumerate(images_u8(6)):
        Image.fromarray(image).save(root / f"{i}.png")
    (root / "3.png").write_bytes((root / "3.png").read_bytes()[:40])  # truncated
    err = cli_error(capsys, tiny_args(tmp_path / "run", "--data", f"folder:{root}"))
    assert "3.png: unreadable image" in err


@pytest.mark.parametrize("data, message", [
    ("folder:{tmp}/missing", r"image folder '.*missing' does not exist"),
    ("folder:{tmp}/empty", r"no images found under '.*empty': expected files with extensions"),
    ("folder:{tmp}/file.txt", r"image folder '.*file.txt' is not a directory"),
    ("folder:", r"'folder:' names no path; pass folder:PATH"),
    ("folder:{tmp}/two", r"has too few images \(2\) for a val split: .*needs at least 3 images"),
    ("hdf5:{tmp}/missing.h5", r"HDF5 file '.*missing.h5' does not exist"),
    ("hdf5:{tmp}/empty", r"'.*empty' is a directory; hdf5:PATH needs the .h5/.hdf5 file itself"),
    ("hdf5:{tmp}/none.h5", r"none.h5:/image holds no images \(shape \(0, 8, 8, 3\)\)"),
    ("mnist", r"unknown data 'mnist': pass one of shapes, clevr-mirror, stacks, same-hue"),
])
def test_empty_or_missing_dataset_path(tmp_path, capsys, data, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "two").mkdir()
    for i, image in enumerate(images_u8(2)):
        Image.fromarray(image).save(tmp_path / "two" / f"{i}.png")
    with h5py.File(tmp_path / "none.h5", "w") as handle:
        handle["image"] = np.zeros((0, 8, 8, 3), np.uint8)
    err = cli_error(capsys, tiny_args(tmp_path / "run", "--data", data.format(tmp=tmp_path)))
    assert err.startswith("deqslots train: error: ")
    assert re.search(message, err), err


def test_hdf5_without_masks_trains_on_images_alone(tmp_path):
    path = write_h5(tmp_path / "plain.h5", image=images_u8(40, size=RES))
    stream = BatchStream(f"hdf5:{path}", "train", RES, 4, 0)
    batch = stream.batch(0)
    assert batch["mask"] is None and batch["image"].shape == (4, 3, RES, RES)
    summary = train(TrainConfig(data=f"hdf5:{path}", resolution=RES, num_slots=3, batch_size=4, steps=1,
                                eval_batches=1, out=str(tmp_path / "run"), progress=False, threads=1))
    assert summary["mse"] > 0 and summary["fg_ari"] != summary["fg_ari"]  # no masks: FG-ARI is NaN


def test_batch_stream_split_and_batch_size(tmp_path):
    path = write_h5(tmp_path / "plain.h5", image=images_u8(10))
    with pytest.raises(ValueError, match="unknown split 'dev'; pass one of train, val, test"):
        BatchStream(f"hdf5:{path}", "dev", 8, 4, 0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        BatchStream("shapes", "train", RES, 0, 0)


# --- the command line -------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--steps", "-5"], "steps must be a positive integer; got -5"),
    (["--batch-size", "0"], "batch_size must be a positive integer; got 0"),
    (["--variant", "XX"], "argument --variant: invalid choice: 'XX' (choose from 'vanilla', 'IN', 'BN', 'BB', 'IB') "
                          "(see deqslots train --help)"),
    (["--model", "sa"], "argument --model: invalid choice: 'sa'"),
    (["--resolution", "33"], "resolution must be broadcast (8) times a power of two; got 33"),
    (["--model", "slate", "--resolution", "33"], "SLATE resolution must be a positive multiple of 4"),
    (["--config", "paper-256"], "unknown config 'paper-256'; choose one of paper-128, paper-64, paper-32, cpu-small"),
    (["--iters", "0"], "SlotAttention iters must be a positive int; got 0"),
    (["--lr", "-1"], "lr must be > 0; got -1.0"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--warmup-steps", "-1"], "warmup_steps must be an integer >= 0 (0 = off)"),
    (["--decay-steps", "-100"], "decay_steps must be an integer >= 0 (0 = off)"),
    (["--threads", "-1"], "threads must be a positive integer (0 or None: torch's default); got -1"),
    (["--tau-steps", "5"], "tau_steps is a SLATE setting; use it with model='slate' (--model slate)"),
    (["--tau-start", "2"], "--tau-start is a SLATE setting; use it with --model slate"),
    (["--variant", "IN", "--set", "variant=vanilla"], "--set variant='vanilla' (the flag says 'IN'): give a field "
                                                      "that has a flag of its own (--variant) with that flag only"),
    (["--iters", "5", "--set", "iters=3"], "--set iters=3 (the flag says 5)"),
    (["--num-slots", "3", "--set", "num_slots=4,slot_dim=32"], "--set num_slots=4 (the flag says 3)"),
    (["--tau-final", "0.5"], "--tau-final is a SLATE setting; use it with --model slate"),
])
def test_invalid_cli_values(tmp_path, capsys, extra, message):
    err = cli_error(capsys, tiny_args(tmp_path / "run", *extra))
    assert message in err, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_unknown_subcommand_and_output_under_a_file(tmp_path, capsys):
    assert "invalid choice: 'trian'" in cli_error(capsys, ["trian"])
    (tmp_path / "file").write_text("x")
    assert "Not a directory" in cli_error(capsys, tiny_args(tmp_path / "file" / "run"))


def test_eval_needs_at_least_one_batch(finished_run, capsys):
    err = cli_error(capsys, ["eval", str(finished_run), "--batches", "0"])
    assert "evaluation needs at least one batch (--batches N with N >= 1); got 0" in err
    with pytest.raises(ValueError, match="at least one batch"):
        evaluate(build_model(TrainConfig(resolution=RES)), BatchStream("shapes", "val", RES, 2, 0), batches=0)


# --- checkpoints ------------------------------------------------------------------------------------------

def test_missing_or_corrupt_checkpoint(finished_run, tmp_path, capsys):
    assert "no checkpoint at" in cli_error(capsys, ["eval", str(tmp_path / "nothing")])
    run = copy_run(finished_run, tmp_path)
    blob = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    for argv in (["eval", str(run)], tiny_args(run, "--resume")):
        assert "checkpoint.pt could not be read" in cli_error(capsys, argv)


def test_resume_without_a_checkpoint_starts_the_run_and_says_so(tmp_path, capsys):
    capsys.readouterr()
    assert main(tiny_args(tmp_path / "typo", "--resume")) == 0
    assert f"--resume: no checkpoint in {tmp_path / 'typo'} yet; starting a new run there" in capsys.readouterr().err
    assert (tmp_path / "typo" / "checkpoint.pt").exists()


def test_a_file_not_written_by_train_is_refused(tmp_path, capsys):
    run = tmp_path / "bare"
    run.mkdir()
    torch.save({"weight": torch.ones(2)}, run / "checkpoint.pt")
    err = cli_error(capsys, ["eval", str(run)])
    assert "is not a checkpoint written by deqslots train (it lacks model, optimizer, step, train_config)" in err


def test_resume_from_a_file_not_written_by_train_is_refused(tmp_path, capsys):
    run = tmp_path / "bare"
    run.mkdir()
    torch.save({"weight": torch.ones(2)}, run / "checkpoint.pt")
    err = cli_error(capsys, tiny_args(run, "--resume"))
    assert "is not a checkpoint written by deqslots train (it lacks model, optimizer, step, train_config)" in err


def test_eval_refuses_weights_of_another_model(finished_run, tmp_path, capsys):
    """A slot-attention checkpoint relabelled as a SLATE run (or with another slot count) is refused."""
    state = load_checkpoint(finished_run / "checkpoint.pt")
    slate_config = dataclasses.asdict(TrainConfig(model="slate", data="shapes", resolution=RES, batch_size=4))
    cases = {
        "relabelled": {**state, "train_config": slate_config},
        "weights-only": {**{k: v for k, v in state.items() if k != "model_config"}, "train_config": slate_config},
        "config": {**state, "train_config": {**state["train_config"], "num_slots": 4}},
    }
    expected = {
        "relabelled": "was saved from a different model (SLATE differs in",
        "weights-only": "holds weights of a different model than SLATE (Missing key(s) in state_dict",
        "config": "was saved from a different model (SlotAutoencoder differs in num_slots: checkpoint 3 vs model 4)",
    }
    for name, tampered in cases.items():
        run = tmp_path / name
        run.mkdir()
        torch.save(tampered, run / "checkpoint.pt")
        err = cli_error(capsys, ["eval", str(run), "--batches", "1"])
        assert expected[name] in err and "load it with the model and settings that trained it" in err, err


def test_resume_refuses_another_model_or_config(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    before = (run / "checkpoint.pt").read_bytes()
    err = cli_error(capsys, tiny_args(run, "--resume", "--model", "slate"))
    assert ("--resume with different settings than the checkpoint: model: checkpoint 'slot-attention' "
            "vs now 'slate'") in err
    err = cli_error(capsys, tiny_args(run, "--resume", "--num-slots", "4"))
    assert "num_slots: checkpoint 3 vs now 4" in err
    assert "pass --resume" in cli_error(capsys, tiny_args(run))  # never overwritten without --resume
    assert (run / "checkpoint.pt").read_bytes() == before


def test_negative_mask_ids_are_refused_at_the_first_read(tmp_path, capsys):
    # -1 as background (a common convention elsewhere) would have become an object (uint16 wrap in data convert)
    # or failed only at the first evaluation, naming no file
    masks = np.random.default_rng(0).integers(-1, 4, (40, 8, 8)).astype(np.int16)
    path = write_h5(tmp_path / "neg.h5", image=images_u8(40), mask=masks)
    err = cli_error(capsys, tiny_args(tmp_path / "run", "--data", f"hdf5:{path}", "--eval-every", "100"))
    assert "neg.h5:mask[" in err and "holds negative instance ids (min -1)" in err and "mask + 1" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    err = cli_error(capsys, ["data", "convert", f"hdf5:{path}", str(tmp_path / "out.h5"), "--no-progress"])
    assert "holds negative instance ids" in err and not (tmp_path / "out.h5").exists()


def test_eval_says_when_a_small_split_repeats_images(tmp_path, capsys):
    path = write_h5(tmp_path / "small.h5", image=images_u8(40))  # 90/5/5: a test split of 2 images
    run = tmp_path / "run"
    assert main(tiny_args(run, "--data", f"hdf5:{path}")) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--batches", "2"]) == 0
    captured = capsys.readouterr()
    assert "the test split holds 2 images, fewer than the 8 evaluated (2 batches of 4): images repeat" in captured.err
    result = json.loads((run / "eval_test.json").read_text())
    assert (result["images"], result["distinct_images"]) == (8, 2)


def test_resume_accepts_the_defaults_it_ran_with_spelt_out(finished_run, tmp_path, capsys):
    # the run left iters / num_slots to its config (None in the checkpoint): repeating the config's values is the
    # same run, another value is not
    run = copy_run(finished_run, tmp_path)
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved["train_config"]["iters"] is None and saved["model_config"]["iters"] == 7
    assert main(tiny_args(run, "--resume", "--iters", "7", "--steps", "2")) == 0  # the later --steps wins
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2
    err = cli_error(capsys, tiny_args(run, "--resume", "--iters", "5", "--steps", "3"))
    assert "iters: checkpoint 7 vs now 5" in err


def test_eval_of_a_run_whose_data_moved_says_to_pass_data(tmp_path, capsys):
    path = write_h5(tmp_path / "moving.h5", image=images_u8(40))
    run = tmp_path / "run"
    assert main(tiny_args(run, "--data", f"hdf5:{path}")) == 0
    path.rename(tmp_path / "moved.h5")
    err = cli_error(capsys, ["eval", str(run)])
    assert "does not exist" in err and "pass --data with its new place, e.g. --data hdf5:NEW_PATH" in err
    assert main(["eval", str(run), "--data", f"hdf5:{tmp_path / 'moved.h5'}", "--batches", "1"]) == 0
    err = cli_error(capsys, ["eval", str(run), "--iters", "0"])
    assert "--iters takes the number of slot-attention iterations" in err
