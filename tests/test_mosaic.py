"""One tile layout for kernels and feature maps, shared by labkit inspect and the dashboard."""

from __future__ import annotations

import numpy as np
import pytest

from dashboards import figures
from labkit.inspect import feature_map_figure, kernel_grid_figure
from labkit.mosaic import kernel_columns, mosaic, square_columns


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


def test_inspect_and_the_dashboard_lay_feature_maps_out_alike():
    maps = np.random.default_rng(1).standard_normal((10, 4, 4)).astype(np.float32)
    drawn = feature_map_figure(maps, "f").axes[0].images[0].get_array().filled(np.nan)
    shown = np.asarray(figures.feature_map_grid(maps, "f").data[0].z, dtype=np.float32)
    np.testing.assert_array_equal(drawn, shown)
