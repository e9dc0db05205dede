"""``labkit inspect``: kernel and feature-map figures from a recorded run."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
from matplotlib.colors import LogNorm

import labkit.inspect
from labkit.cli import main
from labkit.inspect import confusion_figure, feature_map_figure, kernel_grid_figure
from labkit.recording import open_recording


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "run"
    args = ["train", "--epochs", "1", "--record-every", "20", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    return out


def test_every_layer_gets_a_feature_map_and_every_convolution_its_kernels(run_dir, capsys):
    out = run_dir / "figs"
    assert main(["inspect", str(run_dir), "--out", str(out), "--image", "5"]) == 0
    names = sorted(path.name for path in out.iterdir())
    printed = sorted(line.split("/")[-1] for line in capsys.readouterr().out.split())
    assert names == printed
    kernels = [n for n in names if n.startswith("kernels-")]
    features = [n for n in names if n.startswith("features-")]
    assert kernels == ["kernels-00-Convolutional-step63.png", "kernels-03-Convolutional-step63.png"]
    assert len(features) == 10 and all(n.endswith("-step63-probe5.png") for n in features)


def test_kernel_pixels_differ_between_two_steps(run_dir):
    out = run_dir / "steps"
    for step in ("1", "63"):
        assert (
            main(["inspect", str(run_dir), "--step", step, "--layer", "0", "--out", str(out)]) == 0
        )
    first = matplotlib.image.imread(out / "kernels-00-Convolutional-step1.png")
    last = matplotlib.image.imread(out / "kernels-00-Convolutional-step63.png")
    assert first.shape == last.shape
    assert np.abs(first - last).max() > 0.1


def test_svg_and_the_nearest_step(run_dir, capsys):
    out = run_dir / "svg"
    args = ["inspect", str(run_dir), "--step", "32", "--layer", "9", "--format", "svg"]
    assert main([*args, "--out", str(out)]) == 0
    assert "using the nearest, step 30" in capsys.readouterr().out
    (figure,) = out.iterdir()
    assert figure.name == "features-09-Dense-step30-probe0.svg"
    assert figure.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "42-Nothing"], "no recorded layer '42-Nothing'"),
        (["--image", "16"], "--image must be between 0 and 15"),
    ],
)
def test_bad_input_is_one_line(run_dir, extra, message, capsys):
    assert main(["inspect", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and len(err.strip().splitlines()) == 1


def test_figures_are_pure_functions_of_their_arrays():
    kernels = np.random.default_rng(0).standard_normal((4, 2, 3, 3))
    image = kernel_grid_figure(kernels, "k").axes[0].images[0]
    assert np.nanmax(np.abs(image.get_array())) == pytest.approx(np.abs(kernels).max())
    assert image.get_clim() == pytest.approx((-np.abs(kernels).max(), np.abs(kernels).max()))
    bars = feature_map_figure(np.array([1.0, -2.0, 3.0]), "v").axes[0].patches
    assert [bar.get_height() for bar in bars] == [1.0, -2.0, 3.0]


def test_confusion_errors_are_on_a_log_scale_and_every_non_zero_cell_is_counted():
    matrix = np.diag([980, 1135, 1032]) + np.array([[0, 1, 0], [0, 0, 20], [3, 0, 0]])
    axes = confusion_figure(matrix).axes[0]
    right, wrong = axes.images
    assert isinstance(wrong.norm, LogNorm) and not isinstance(right.norm, LogNorm)
    assert wrong.norm.vmin == pytest.approx(1 / 1155)  # one digit of the largest class shows
    errors = wrong.get_array()
    assert (errors.mask == ((matrix == 0) | np.eye(3, dtype=bool))).all()  # zeros: blank
    assert not right.get_array().mask[np.eye(3, dtype=bool)].any()
    written = {(text.get_position(), text.get_text()) for text in axes.texts}
    assert written == {((p, t), str(n)) for (t, p), n in np.ndenumerate(matrix) if n}


def test_feature_maps_with_both_signs_are_diverging_around_0_else_sequential_from_0():
    signed = np.array([[[-0.5, 2.0], [0.0, 1.0]]])
    image = feature_map_figure(signed, "conv").axes[0].images[0]
    assert image.get_cmap().name == "RdBu_r" and image.get_clim() == (-2.0, 2.0)
    relu = feature_map_figure(np.abs(signed), "relu").axes[0].images[0]
    assert relu.get_cmap().name == "viridis" and relu.get_clim() == (0.0, 2.0)


def test_the_input_digit_comes_first_with_its_label():
    digit = np.random.default_rng(4).random((1, 28, 28))
    maps = np.ones((4, 3, 3))
    first, drawn = feature_map_figure(maps, "relu", image=digit, label=7).axes[:2]
    assert first.get_title() == "input: digit 7"
    np.testing.assert_allclose(first.images[0].get_array(), digit[0], rtol=1e-6)
    assert drawn.get_title() == "relu" and drawn.images[0].get_array().shape == (7, 7)
    bars = feature_map_figure(np.ones(5), "dense", image=digit, label=7).axes
    assert bars[0].get_title() == "input: digit 7" and len(bars[1].patches) == 5


def test_a_reshape_is_a_note_and_the_last_layer_is_labelled_by_class():
    note = feature_map_figure(np.ones(512), "r", layer_class="Reshape", previous="05-ReLU")
    [text] = note.axes[0].texts
    assert text.get_text().startswith("Reshape: the same 512 values as 05-ReLU, flattened to")
    assert not note.axes[0].patches and not note.axes[0].images
    last = feature_map_figure(np.linspace(-1, 1, 10), "logits", last=True).axes[0]
    assert last.get_xlabel() == "class (logits)"
    assert list(last.get_xticks()) == list(range(10))
    assert feature_map_figure(np.ones(10), "hidden").axes[0].get_xlabel() == "unit"


def test_inspect_tells_each_figure_its_layer_and_the_probe(run_dir, monkeypatch):
    calls = {}
    real = labkit.inspect.feature_map_figure

    def spy(maps, title, **options):
        calls[title.split()[0]] = options
        return real(maps, title, **options)

    monkeypatch.setattr(labkit.inspect, "feature_map_figure", spy)  # labkit inspect's, when run
    assert main(["inspect", str(run_dir), "--image", "2", "--out", str(run_dir / "spy")]) == 0
    assert calls["06-Reshape"]["layer_class"] == "Reshape"
    assert calls["06-Reshape"]["previous"] == "05-ReLU"
    assert [key for key, options in calls.items() if options["last"]] == ["09-Dense"]
    assert calls["00-Convolutional"]["previous"] is None
    recorded = open_recording(run_dir)
    assert {options["label"] for options in calls.values()} == {recorded.probe_labels[2]}
    for options in calls.values():
        np.testing.assert_array_equal(options["image"], recorded.probe_images[2])
