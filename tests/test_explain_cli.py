"""``labkit explain``: a layer's backward pass for one probe, its chain rule and check,
its figures, and bad input as one line with status 2 (issue 16)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from labkit import explain
from labkit.backprop import Part
from labkit.cli import main
from labkit.explain_figures import part_canvas, saliency_figure
from labkit.recording import BACKWARD_SCALE, SALIENCY, gradient_array, open_recording

# 20 steps of 100 digits, recorded at steps 1-10, 15 and 20: a second or two each
TRAIN = ["--epochs", "1", "--batch-size", "100", "--record-every", "5", "--no-progress"]
NUMBER = r"[+-]\d\.\d+e[+-]\d+"


def train(root: Path, model: str) -> Path:
    out = root / model
    assert main(["train", "--model", model, *TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("explain"), "lenet")


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("explain"), "tutorial")


@pytest.fixture(scope="module")
def old_run(lenet, tmp_path_factory) -> Path:
    """The lenet run as labkit before 0.6 recorded it: no probe gradients in its manifest
    (which is what :attr:`Recording.has_backward` reads)."""
    path = tmp_path_factory.mktemp("old") / "lenet"
    shutil.copytree(lenet, path, ignore=shutil.ignore_patterns("figures"))
    manifest = json.loads((path / "manifest.json").read_text())
    keys = [entry["key"] for entry in manifest["layers"]]
    for name in [SALIENCY, BACKWARD_SCALE, *map(gradient_array, keys)]:
        del manifest["record_arrays"][name]
        manifest["consolidated"].pop(name, None)
    manifest.pop("probe_loss")
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert not open_recording(path).has_backward
    return path


def explained(capsys, run: Path, *options: str) -> str:
    """What ``labkit explain RUN OPTIONS`` prints, after checking it succeeded."""
    assert main(["explain", str(run), *options]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def element_and_total(out: str) -> tuple[str, float, float]:
    """The explained element, its value, and the chain rule's printed total."""
    name, value = re.search(rf"^(d\w+\[[\d,]+\]) = ({NUMBER})", out, re.M).groups()
    total = re.search(rf"^  ({NUMBER})  = d\w+\[[\d,]+\] \(\d+ terms?\)$", out, re.M).group(1)
    return name, float(value), float(total)


def figures(out: str) -> list[Path]:
    return [Path(line) for line in out.splitlines() if line.endswith((".png", ".svg"))]


def test_a_convolution_explained_with_its_default_step_part_and_element(lenet, capsys):
    out = explained(capsys, lenet, "--layer", "0", "--probe", "2")
    recording = open_recording(lenet)
    label = int(recording.probe_labels[2])
    assert f"run {lenet}, step 20 (the last record)\n" in out
    p = recording.probabilities(20)[2][label]
    loss = f"the gradients are of its own softmax_cross_entropy loss, {-np.log(p):.3e}"
    assert re.search(rf"^probe 2: digit {label} \(p = {p:.6f}\); {loss}$", out, re.M)
    assert "layer 00-Convolutional (Convolutional: convolution), output 16×24×24" in out
    for part in ("x", "kernels", "y", "dy", "rotated", "dx", "dkernels", "dbiases"):
        assert re.search(rf"^  {part} +.+ [\d×]+ +\[{NUMBER}, {NUMBER}\]", out, re.M), part
    assert "dX = dY ∗full rot180(K)" in out
    assert re.search(r"^formula vs recorded: .* \d\.\de-0[3-9] .*: agrees$", out, re.M)
    ex = explain.explain_layer(recording, 0, 2, 20)
    index = explain.default_element(ex, "dx")
    name, value, total = element_and_total(out)
    assert name == f"dx[{','.join(map(str, index))}]"
    assert f"{name} = {value:+.6e} (its largest |value|;" in out
    assert value == pytest.approx(ex.backward.parts["dx"].values[index], rel=1e-6)
    assert total == pytest.approx(value, rel=1e-6)
    assert re.search(rf"^check: {re.escape(name)}: analytic .*: agrees$", out, re.M)
    assert "note:" not in out  # the probe's loss is not tiny: nothing to warn of
    written = figures(out)
    assert [path.parent for path in written] == [lenet / "figures" / "explain"] * 3
    tail = "step20-probe2.png"
    assert [path.name for path in written] == [
        f"backward-00-Convolutional-{tail}",
        f"chain-00-Convolutional-dx-{'-'.join(map(str, index))}-{tail}",
        f"saliency-{tail}",
    ]
    for path in written:
        pixels = matplotlib.image.imread(path)[..., :3]
        assert min(pixels.shape[:2]) > 250, path  # drawn, and no stub
        packed = (pixels * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
        assert len(np.unique(packed)) > 200, path  # not blank
        red = (pixels[..., 0] > 0.6) & (pixels[..., 2] < 0.35)
        assert red.sum() > 50, path  # the diverging scale's positive end is there


@pytest.mark.parametrize(
    ("model", "layer", "part"),
    [
        ("lenet", "01-MaxPool", "dx"),
        ("lenet", "02-ReLU", "dx"),
        ("lenet", "07-Dense", "dx"),
        ("lenet", "9", "dweights"),
        ("lenet", "loss", "dz"),
        ("tutorial", "0", "dkernels"),
        ("tutorial", "01-Sigmoid", "dx"),
        ("tutorial", "03-Dense", "dx"),
    ],
)
def test_the_chain_rule_adds_up_to_the_element_and_the_check_agrees(
    model, layer, part, request, capsys, tmp_path
):
    run = request.getfixturevalue(model)
    options = ["--layer", layer, "--probe", "5", "--out", str(tmp_path)]
    out = explained(capsys, run, *options, *(["--part", part] if part != "dx" else []))
    name, value, total = element_and_total(out)
    assert name.startswith(f"{part}[")
    assert total == pytest.approx(value, rel=1e-6)
    recording = open_recording(run)
    ex = explain.explain_layer(recording, layer, 5, 20)
    index = explain.parse_element(name[len(part) + 1 : -1])
    assert index == explain.default_element(ex, part)
    assert re.search(r"^formula vs recorded: .*: agrees$", out, re.M)
    assert re.search(rf"^check: {re.escape(name)}: .*: agrees$", out, re.M)
    assert len(figures(out)) == 3 and all(path.stat().st_size > 10_000 for path in figures(out))


def test_an_element_on_a_kink_is_said_so_not_judged(lenet, capsys, tmp_path, monkeypatch):
    """A max-pool tie: where the digit's background is 0, a window of conv 0's outputs
    all equal its bias; a pixel at the digit's edge breaks the tie."""
    recording = open_recording(lenet)
    for probe in range(16):
        ex = explain.explain_layer(recording, 0, probe, 20)
        if explain.verify(ex, "dx", explain.default_element(ex, "dx")).on_kink:
            break
    else:
        pytest.skip("no probe's largest input gradient is on a kink in this run")
    # as if the network were all but sure of the probe: the verdict may be rounding's
    monkeypatch.setattr("labkit.commands.explain.TINY_LOSS", float("inf"))
    out = explained(capsys, lenet, "--layer", "0", "--probe", str(probe), "--out", str(tmp_path))
    assert re.search(r"^check: dx\[[\d,]+\]: on a kink .*, not judged$", out, re.M)
    assert re.search(rf"^note: probe {probe}'s loss is only .* a kink here may be", out, re.M)
    assert len(figures(out)) == 3


def test_a_chosen_element_of_another_part(lenet, capsys, tmp_path):
    options = ["--layer", "03-Convolutional", "--part", "dkernels", "--element", "2,0,1,3"]
    out = explained(capsys, lenet, *options, "--out", str(tmp_path))
    name, value, total = element_and_total(out)
    assert name == "dkernels[2,0,1,3]" and "(its largest" not in out
    assert "dK[2,0,1,3] = Σ_i,j X[c, i+u, j+v] × dY[d, i, j]" in out
    assert "  = 52 smaller terms" in out  # 8×8 output positions, 12 of them shown
    assert total == pytest.approx(value, rel=1e-6)
    assert re.search(r"^check: dkernels\[2,0,1,3\]: .*: agrees$", out, re.M)


def test_the_gradient_arriving_is_the_sum_of_the_layer_above(lenet, capsys, tmp_path):
    out = explained(capsys, lenet, "--layer", "08-ReLU", "--part", "dy", "--out", str(tmp_path))
    assert "dy is the dX the layer above sent down; its sum, from that layer" in out
    assert re.search(r"^dX\[\d+\] = Σ_i W\[i, j\] × dY\[i\]$", out, re.M)  # 09-Dense's
    assert re.search(r"^check: dy\[\d+\]: .*: agrees$", out, re.M)


def test_the_nearest_record_and_svg(lenet, capsys, tmp_path):
    options = ["--layer", "loss", "--step", "13", "--format", "svg", "--out", str(tmp_path)]
    out = explained(capsys, lenet, *options)
    assert ", step 15 (no record at step 13: the nearest)\n" in out
    assert "layer loss: softmax_cross_entropy, at the end (after 09-Dense)" in out
    written = figures(out)
    assert len(written) == 3 and all(path.name.endswith("step15-probe0.svg") for path in written)
    assert all(path.read_text().lstrip().startswith("<?xml") for path in written)
    assert sorted(tmp_path.iterdir()) == sorted(written)


def test_each_element_of_a_part_is_where_the_canvas_says():
    rng = np.random.default_rng(0)
    for shape in [
        (128, 512),
        (1, 28, 28),
        (16, 12, 12),
        (5, 26, 26),
        (32, 16, 5, 5),
        (16, 1, 5, 5),
    ]:
        values = rng.standard_normal(shape)
        canvas = part_canvas(values)
        for flat in rng.integers(0, values.size, 20):
            index = np.unravel_index(flat, shape)
            x, y = canvas.position(index)
            assert canvas.pixels[y, x] == np.float32(values[index]), (shape, index)
    assert part_canvas(np.zeros(10)) is None  # a vector: bars


def test_the_saliency_strip_frames_the_explained_step():
    scales = np.array([1.0, 1e-6, 1.0, 1e-3]).reshape(4, 1, 1, 1)
    maps = np.random.default_rng(1).standard_normal((4, 1, 28, 28)) * scales
    figure = saliency_figure([1, 5, 10, 20], maps, 10, "saliency", np.zeros((1, 28, 28)), 7)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[:5] == ["input: digit 7", "step 1", "step 5", "step 10 (explained)", "step 20"]
    limits = [axes.get_xlabel() for axes in figure.axes[1:5]]
    assert all(re.fullmatch(r"±\d\.\de[+-]\d+", text) for text in limits)
    assert "each map on its own scale" in figure.get_suptitle()


def test_a_mask_is_drawn_on_a_sequential_scale_and_a_gradient_centred_at_0():
    from labkit.explain_figures import DIVERGING, part_scale

    gradient = Part("dx", "dX", np.array([[-0.5, 2.0]]))
    assert part_scale(gradient) == (DIVERGING, -2.0, 2.0)
    cmap, low, high = part_scale(Part("mask", "mask", np.array([0.0, 1.0]), signed=False))
    assert cmap != DIVERGING and (low, high) == (0.0, 1.0)


# -- bad input: one line on stderr, status 2, nothing written -----------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--layer", "99"], "no recorded layer '99' (layers: 00-Convolutional,"),
        (["--layer", "softmax"], "; or loss, the loss at the end"),
        (["--layer", "0", "--probe", "16"], "probe 16 is out of range: the run has probes 0..15"),
        (["--layer", "0", "--probe", "-1"], "probe -1 is out of range"),
        (["--layer", "0", "--element", "0,99,0"], "element 0,99,0 is outside dx of"),
        (["--layer", "0", "--element", "0,1"], "is outside dx of 00-Convolutional, of shape"),
        (["--layer", "0", "--element", "a,b"], "element 'a,b' is not comma-separated integers"),
        (["--layer", "2", "--part", "dkernels"], "--part 'dkernels': 02-ReLU has no such"),
        (["--layer", "loss", "--part", "dx"], "(its gradients: dz)"),
        (["--layer", "0", "--step", "999"], "--step 999: outside the run"),
        (["--layer", "0", "--model", "tutorial"], "--model tutorial is not the network of"),
    ],
)
def test_bad_input_is_one_line_with_status_2(lenet, options, message, capsys, tmp_path):
    out = tmp_path / "figures"
    status = main(["explain", str(lenet), *options, "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labkit explain: error: "), captured.err
    assert message in lines[0]
    assert not out.exists()


def test_a_run_recorded_before_probe_gradients_is_refused_in_one_line(old_run):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LABKIT_DATA", None)
    result = subprocess.run(
        [sys.executable, "-m", "labkit.cli", "explain", str(old_run), "--layer", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "recorded by an older labkit, without the probes' backward pass" in result.stderr
    assert result.stdout == "" and not (old_run / "figures").exists()


def test_a_missing_run_folder_is_one_line(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nowhere"), "--layer", "0"]) == 2
    assert (
        capsys.readouterr().err
        == f"labkit explain: error: {tmp_path / 'nowhere'}: no such run folder\n"
    )


def test_the_layer_is_required(lenet, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["explain", str(lenet)])
    assert exit.value.code == 2
    assert "the following arguments are required: --layer" in capsys.readouterr().err
