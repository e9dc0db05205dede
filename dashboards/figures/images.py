"""Figures of one step's arrays: kernels, feature maps, a probe digit and its
probabilities (mosaics laid out by :mod:`labkit.mosaic`, as labkit inspect does)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboards.figures.style import (
    BAR_COLOR,
    DIVERGING_SCALE,
    INK_SCALE,
    MARKER_COLOR,
    NEUTRAL_COLOR,
    RIGHT_COLOR,
    SEQUENTIAL_SCALE,
    WRONG_COLOR,
    empty_figure,
    figure,
    image_axes,
)
from labkit.layer_views import colour_range, shape_only_note, unit_axis
from labkit.mosaic import KernelLabels, kernel_columns, kernel_labels, mosaic, square_columns


def kernel_grid(kernels: np.ndarray, title: str, diverging: bool = True) -> go.Figure:
    """Every kernel of a conv layer, (out x in) or wrapped, as ONE mosaic heatmap.

    ``kernels`` is ``(D, C, k, k)``: D rows (output channel k) by C columns (input channel
    c), each row and column labelled, or, for one input channel, the D kernels wrapped into
    a near-square grid in reading order, each headed by its k
    (:func:`labkit.mosaic.kernel_labels`). A 2-D array (a dense layer's weights)
    is shown as one matrix. ``diverging`` centres a symmetric colour scale on 0 (for
    weights, and for ``kernels_now - kernels_at_step0``); otherwise a sequential scale.
    """
    kernels = np.asarray(kernels, dtype=np.float32)
    if kernels.ndim == 2:
        z = kernels
        customdata, heads = None, []
        hover = "out %{y}, in %{x}<br>%{z:.3g}<extra></extra>"
        layout = {
            "xaxis": {"title_text": "input", "showgrid": False, "zeroline": False},
            "yaxis": {"title_text": "output", "autorange": "reversed", "showgrid": False},
        }
    elif kernels.ndim == 4:
        depth, channels, kh, kw = kernels.shape
        columns = kernel_columns(depth, channels)
        z, owner = mosaic(kernels.reshape(depth * channels, kh, kw), columns)
        customdata = np.stack([owner // channels, owner % channels], axis=-1)
        hover = "k %{customdata[0]}, c %{customdata[1]}<br>%{z:.3g}<extra></extra>"
        labels = kernel_labels(depth, channels, kh, kw)
        layout = kernel_axes(z.shape, labels)
        heads = tile_heads(labels)
    else:
        raise ValueError(f"kernels must be (D, C, k, k) or 2-D, got shape {kernels.shape}")
    if diverging:
        finite = np.abs(z[np.isfinite(z)])
        bound = float(finite.max()) if finite.size else 0.0
        bound = bound if bound > 0 else 1.0
        colour = {"colorscale": DIVERGING_SCALE, "zmin": -bound, "zmax": bound, "zmid": 0}
    else:
        colour = {"colorscale": SEQUENTIAL_SCALE}
    heatmap = dict(
        type="heatmap",
        z=z,
        customdata=customdata,
        hoverongaps=False,
        hovertemplate=hover,
        colorbar={"thickness": 10},
        **colour,
    )
    return figure([heatmap, *heads], title, **layout)


def kernel_axes(shape: tuple[int, int], labels: KernelLabels) -> dict:
    """A kernel mosaic's axes, with the ticks or tile heads that name every kernel."""
    axes = image_axes(*shape)
    for axis, ticks, text in (
        ("xaxis", labels.columns, labels.x_title),
        ("yaxis", labels.rows, labels.y_title),
    ):
        axes[axis]["title_text"] = text
        if ticks:
            axes[axis].update(
                showticklabels=True,
                tickmode="array",
                tickvals=[position for position, _ in ticks],
                ticktext=[name for _, name in ticks],
                tickfont_size=8,
            )
    if labels.tiles:  # room above the first row for its heads
        axes["yaxis"]["range"] = [axes["yaxis"]["range"][0], -1.5]
    return axes


def tile_heads(labels: KernelLabels) -> list[dict]:
    """Each tile's k just above it, as ONE text trace (an annotation apiece costs ~0.25 ms)."""
    if not labels.tiles:
        return []
    x, y, text = zip(*labels.tiles, strict=True)
    size = 10 if len(text) <= 36 else 8  # a head fits in the gap above its tile
    return [
        dict(
            type="scatter",
            mode="text",
            x=x,
            y=y,
            text=text,
            textposition="top center",
            textfont={"size": size, "color": MARKER_COLOR},
            hoverinfo="skip",
            showlegend=False,
        )
    ]


def feature_map_grid(
    maps: np.ndarray,
    title: str,
    *,
    layer_class: str | None = None,
    previous: str | None = None,
    last: bool = False,
) -> go.Figure:
    """One probe digit's outputs of a layer: maps ``(C, H, W)`` as a mosaic, ``(n,)`` as bars.

    Signed maps get a diverging scale centred on 0, non-negative ones a sequential scale
    from 0 (:func:`labkit.layer_views.colour_range`). ``last`` (the network's last layer)
    names the bars as classes, 0 to n-1. A layer of class ``layer_class`` Reshape or
    Flatten repeats the values of the layer before (key ``previous``): a note says so.
    """
    maps = np.asarray(maps, dtype=np.float32)  # float16 as stored: plotly.js has no float16
    note = shape_only_note(layer_class, maps.shape, previous)
    if note is not None:
        hint = "pick the layer before to see them" + (" as maps" if maps.ndim == 1 else "")
        return empty_figure(f"{note}<br>{hint}").update_layout(title_text=title)
    if maps.ndim == 1:
        units = unit_axis(last, layer_class)
        bar = dict(
            type="bar",
            x=np.arange(len(maps)),
            y=maps,
            marker={"color": BAR_COLOR, "line_width": 0},
            hovertemplate=f"{units.split()[0]} %{{x}}<br>%{{y:.3g}}<extra></extra>",
        )
        xaxis = {"title_text": units}
        if last:  # one tick per class
            xaxis.update(tickmode="array", tickvals=list(range(len(maps))))
        layout = {"xaxis": xaxis, "yaxis": {"title_text": "output"}, "margin_b": 46}
        return figure([bar], title, bargap=0.1, **layout)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"maps must be (C, H, W), (H, W) or (n,), got shape {maps.shape}")
    z, owner = mosaic(maps, square_columns(len(maps)))
    low, high, diverging = colour_range(z)
    scale = DIVERGING_SCALE if diverging else SEQUENTIAL_SCALE
    heatmap = dict(
        type="heatmap",
        z=z,
        customdata=owner,
        colorscale=scale,
        zmin=low,
        zmax=high,
        zmid=0 if diverging else None,
        hoverongaps=False,
        hovertemplate="channel %{customdata}<br>%{z:.3g}<extra></extra>",
        colorbar={"thickness": 10},
    )
    return figure([heatmap], title, **image_axes(*z.shape))


def probabilities_bar(probs: np.ndarray, label: int) -> go.Figure:
    """The class probabilities; the true label in green, a wrong prediction in red."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    predicted = int(np.argmax(probs))
    colours = np.full(len(probs), NEUTRAL_COLOR, dtype=object)
    colours[predicted] = WRONG_COLOR
    colours[label] = RIGHT_COLOR
    bar = dict(
        type="bar",
        x=[str(c) for c in range(len(probs))],
        y=probs,
        marker={"color": colours, "line_width": 0},
        hovertemplate="P(%{x}) = %{y:.3f}<extra></extra>",
    )
    verdict = "right" if predicted == label else "wrong"
    return figure(
        [bar],
        f"probabilities: label {label}, predicted {predicted} ({verdict})",
        bargap=0.15,
        xaxis={"type": "category", "title_text": "class"},
        yaxis={"range": [0, 1], "tickformat": ".0%"},
    )


def probe_image(image: np.ndarray, label: int, predicted: int) -> go.Figure:
    """A probe digit as dark ink on white, titled with its label and the prediction."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"image must be (1, H, W) or (H, W), got shape {image.shape}")
    heatmap = dict(
        type="heatmap",
        z=image,
        colorscale=INK_SCALE,
        zmin=min(0.0, float(image.min())),
        zmax=max(1.0, float(image.max())),
        showscale=False,
        hovertemplate="(%{y}, %{x})<br>%{z:.2f}<extra></extra>",
    )
    right = predicted == label
    return figure(
        [heatmap],
        f"label {label}, predicted {predicted}",
        title_font_color=RIGHT_COLOR if right else WRONG_COLOR,
        **image_axes(*image.shape),
    )
