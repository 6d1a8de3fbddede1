"""The main job (`deqslots demo`) end to end, with a two-step budget."""

from deqslots.demo import run_demo


def test_demo_writes_an_honest_report(tmp_path, capsys):
    report = run_demo(tmp_path, steps=2)
    text = report.read_text()
    assert "| vanilla |" in text and "| IN |" in text
    assert "| shapes-IN |" in text and "| shapes-vanilla |" in text and "| same-hue-IN |" in text
    assert "![same-hue-IN](pretrained_same-hue-IN.png)" in text  # one where colour fails
    assert "Neither variant separates objects yet" in text  # two steps learn nothing, and it says so
    # the shipped SLATE models: a table row and a figure each
    assert "### Shipped SLATE models" in text and "| shapes-slate-IN | IN | shapes |" in text
    assert "![shapes-slate-vanilla](pretrained_shapes-slate-vanilla.png)" in text
    for name in ("loss_curves.png", "val_fg_ari.png", "vanilla/segmentations.png", "IN/segmentations.png",
                 "pretrained_shapes-IN.png", "pretrained_shapes-vanilla.png", "pretrained_same-hue-IN.png",
                 "pretrained_shapes-slate-IN.png"):
        assert (tmp_path / name).exists()
    out = capsys.readouterr().out
    assert "deqslots anderson" in out and "cosine to exact gradient" in out
    assert "shapes-IN: trained" in out and "shapes-slate-IN (SLATE IN, shapes): on 16 fresh test scenes" in out
