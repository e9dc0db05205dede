"""One tile layout for kernels and feature maps, shared by labkit inspect and the dashboard."""

from __future__ import annotations

import numpy as np
import pytest

from dashboards import figures
from labkit.inspect import feature_map_figure, kernel_grid_figure
from labkit.mosaic import kernel_columns, kernel_labels, mosaic, square_columns


def test_mosaic_places_each_tile_with_gutters_and_owners():
    tiles = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    canvas, owner = mosaic(tiles, columns=2)
    assert canvas.shape == owner.shape == (3 * 3 - 1, 2 * 4 - 1)
    assert np.array_equal(canvas[3:5, 4:7], tiles[3])
    assert (owner[3:5, 4:7] == 3).all()
    assert np.isnan(canvas[2]).all() and np.isnan(canvas[:, 3]).all()
    assert (owner[2] == -1).all() and np.isnan(canvas[6:, 4:]).all()  # the empty sixth slot


@pytest.mark.parametrize(
    ("depth", "channels", "columns"), [(16, 1, 4), (5, 1, 3), (32, 16, 16), (1, 1, 1), (3, 2, 2)]
)
def test_the_column_rule(depth, channels, columns):
    assert kernel_columns(depth, channels) == columns
    if channels == 1:
        assert square_columns(depth) == columns


@pytest.mark.parametrize("shape", [(16, 1, 5, 5), (4, 3, 3, 3), (7, 1, 2, 2)])
def test_inspect_and_the_dashboard_lay_kernels_out_alike(shape):
    kernels = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    drawn = kernel_grid_figure(kernels, "k").axes[0].images[0].get_array().filled(np.nan)
    shown = np.asarray(figures.kernel_grid(kernels, "k").data[0].z, dtype=np.float32)
    np.testing.assert_array_equal(drawn, shown)


def test_one_input_channel_heads_every_tile_with_its_output_channel():
    labels = kernel_labels(16, 1, 5, 5)  # lenet's conv 0: 4 per row
    assert [k for _, _, k in labels.tiles] == [str(k) for k in range(16)]
    canvas, owner = mosaic(np.zeros((16, 5, 5)), kernel_columns(16, 1))
    for x, y, k in labels.tiles:  # centred on its tile's columns, just above its top row
        assert owner[int(y + 0.5), int(x)] == int(k)
        assert y < 0 or owner[int(y - 0.5), int(x)] == -1  # in the gap above
    assert labels.rows == labels.columns == [] and "4 per row" in labels.x_title


def test_several_input_channels_label_every_row_and_column():
    labels = kernel_labels(32, 16, 5, 5)  # lenet's conv 3
    assert [k for _, k in labels.rows] == [str(k) for k in range(32)]
    assert [c for _, c in labels.columns] == [str(c) for c in range(16)]
    assert labels.rows[1][0] == 6 + 2 and labels.tiles == []  # the centre of row 1's tiles
    assert (labels.y_title, labels.x_title) == ("output channel k", "input channel c")


@pytest.mark.parametrize("shape", [(16, 1, 5, 5), (3, 2, 3, 3)])
def test_inspect_and_the_dashboard_label_kernels_alike(shape):
    kernels = np.random.default_rng(2).standard_normal(shape)
    drawn = kernel_grid_figure(kernels, "k").axes[0]
    plotted = figures.kernel_grid(kernels, "k")
    shown = plotted.layout
    heads = {
        head
        for trace in plotted.data[1:]
        for head in zip(trace.x, trace.y, trace.text, strict=True)
    }
    assert {(*t.get_position(), t.get_text()) for t in drawn.texts} == heads
    assert len(heads) == (shape[0] if shape[1] == 1 else 0)
    ticks = [t.get_text() for t in drawn.get_yticklabels()]
    assert ticks == list(shown.yaxis.ticktext or []) == ([] if shape[1] == 1 else ["0", "1", "2"])
    assert drawn.get_xlabel() == shown.xaxis.title.text


def test_inspect_and_the_dashboard_lay_feature_maps_out_alike():
    maps = np.random.default_rng(1).standard_normal((10, 4, 4)).astype(np.float32)
    drawn = feature_map_figure(maps, "f").axes[0].images[0].get_array().filled(np.nan)
    shown = np.asarray(figures.feature_map_grid(maps, "f").data[0].z, dtype=np.float32)
    np.testing.assert_array_equal(drawn, shown)
