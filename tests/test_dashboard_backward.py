"""The backward view: its callbacks as the page posts them (the parts it draws are the
recorded gradients and the formulas', a click's chain rule sums to the clicked value,
verify agrees on a correct run, an older run is one line), every figure validated, and
in a real browser: open the view, click a cell, read the sum, press verify."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from figure_checks import validated
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.wait import WebDriverWait

from dashboards import backward, callbacks, view
from dashboards.app import create_app
from dashboards.callback_requests import body, outputs_of, post
from dashboards.figures import backward as bf
from dashboards.store import RunStore
from labkit import explain
from labkit.recording import BACKWARD_SCALE, SALIENCY, gradient_array

PROBE = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained):
    """``lenet`` (the shared 1-epoch run) and ``old``, the same run as an older labkit
    recorded it: without the probes' gradients."""
    root = tmp_path_factory.mktemp("backward")
    shutil.copytree(trained, root / "lenet")
    shutil.copytree(trained, root / "old")
    manifest = root / "old" / "manifest.json"
    document = json.loads(manifest.read_text())
    layers = [entry["key"] for entry in document["layers"]]
    gone = {SALIENCY, BACKWARD_SCALE, *(gradient_array(key) for key in layers)}
    for key in ("record_arrays", "consolidated"):
        document[key] = {name: v for name, v in document[key].items() if name not in gone}
    manifest.write_text(json.dumps(document))
    return root


@pytest.fixture(scope="module")
def app(runs):
    return create_app(runs)


def decoded(value) -> np.ndarray:
    """An array as the response carries it: a plotly.js typed array, or a list."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = [int(n) for n in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape)
    return np.asarray(value, dtype=np.float64)


def taking(app, prop: str) -> str:
    """An output (as ``callback_map`` spells it) of the one server callback taking
    ``prop``: its outputs are all written by others too (``allow_duplicate``)."""
    (key,) = [
        k
        for k, spec in app.callback_map.items()
        if prop in (f"{d['id']}.{d['property']}" for d in spec["inputs"])
        and "callback" in spec  # a server callback (a client-side one has none)
    ]
    return outputs_of(key)[0] if key.startswith("..") else key


def send(client, app, output: str, values: dict, changed: tuple[str, ...]):
    """Post the callback writing ``output`` with the page's values; its answer."""
    response = client.post("/_dash-update-component", json=body(app, output, values, changed))
    assert response.status_code == 200, response.data[:300]
    return response.get_json()["response"]


def show(client, app, at: dict, element=None, drawn=None) -> dict:
    values = {"backward-at.data": at, "backward-element.data": element}
    values["backward-drawn.data"] = drawn
    return send(client, app, "backward-title.children", values, ("backward-at.data",))


def last_step(runs) -> int:
    return int(RunStore(runs).get("lenet").run.steps[-1])


def text_of(component) -> str:
    """Every string in a component tree as the response sends it, joined."""
    if isinstance(component, str):
        return component
    if isinstance(component, list):
        return "".join(text_of(c) for c in component)
    if isinstance(component, dict):
        return text_of(component.get("props", {}).get("children", ""))
    return "" if component is None else str(component)


def find(component, id_: str):
    """The component with ``id_`` in a response's tree (None if absent)."""
    if isinstance(component, list):
        return next((f for c in component if (f := find(c, id_)) is not None), None)
    if isinstance(component, dict):
        props = component.get("props", {})
        return component if props.get("id") == id_ else find(props.get("children"), id_)
    return None


# ---------------------------------------------------------------------- the parts


@pytest.mark.parametrize("layer", [0, 3, 9])
def test_the_gradient_arriving_is_the_recorded_one(app, runs, layer):
    client = app.server.test_client()
    step = last_step(runs)
    answer = show(client, app, {"run": "lenet", "step": step, "probe": PROBE, "layer": layer})
    drawn = answer["backward-drawn"]["data"]
    assert drawn["step"] == step and drawn["parts"][:1] == ["x"]
    run = RunStore(runs).get("lenet").run
    recorded = run.probe_gradients(step)[run.key(layer)][PROBE]
    slot = drawn["parts"].index("dy")
    trace = answer[f"backward-part-{slot}"]["figure"]["data"][0]
    if recorded.ndim == 1:  # a dense layer's: bars
        np.testing.assert_array_equal(decoded(trace["y"]), recorded.astype(np.float32))
    else:
        np.testing.assert_array_equal(decoded(trace["z"]), bf.drawn(recorded), strict=False)
    title = answer["backward-title"]["children"]
    assert run.key(layer) in title and f"probe {PROBE}" in title and f"step {step:,}" in title
    assert "they agree" in answer["backward-agreement"]["children"]
    assert answer["backward-body"]["style"] == {"display": "block"}
    shown = [answer[f"backward-slot-{i}"]["style"]["display"] for i in range(backward.SLOTS)]
    count = len(drawn["parts"])
    assert shown == ["block"] * count + ["none"] * (backward.SLOTS - count)


def test_every_layer_and_the_loss_draw_their_parts_titled_with_their_formulas(runs):
    cached = RunStore(runs).get("lenet")
    step = int(cached.run.steps[-1])
    options = backward.layer_options(cached)
    assert options[-1] == {"label": "loss (softmax cross-entropy)", "value": explain.LOSS}
    assert len(options) == len(cached.run.layers) + 1
    kinds = {}
    for option in options:
        at = {"step": step, "probe": PROBE, "layer": option["value"]}
        shown = backward.backward_view(cached, at)
        explained = backward.explained_at(cached, step, PROBE, backward.cursor(cached, at)[2])
        kinds[explained.backward.kind] = shown
        assert shown.parts == list(explained.backward.parts)[: backward.SLOTS]
        for key, fig in zip(shown.parts, shown.figures, strict=True):
            validated(fig)
            part = explained.backward.parts[key]
            assert fig.layout.title.text.startswith(part.title)
            assert part.formula in fig.layout.title.text
            trace = fig.data[0]
            if part.values.ndim > 1 and part.signed:  # a diverging scale centred at 0
                assert trace.zmid == 0 and trace.zmin == -trace.zmax > -np.inf
                assert trace.zmax == pytest.approx(np.abs(part.values).max(), rel=1e-6)
        marked = [
            key for key, fig in zip(shown.parts, shown.figures, strict=True) if fig.layout.shapes
        ]
        assert marked == ([shown.choice[0]] if shown.choice else [])  # framed where it is
        if shown.choice:  # the default element: the largest |gradient sent down|
            part, index = shown.choice
            assert part == explained.gradient_part
            values = explained.backward.parts[part].values
            assert abs(values[index]) == np.abs(values).max()
    assert set(kinds) == {"convolution", "maxpool", "activation", "reshape", "dense", "loss"}
    conv = kinds["convolution"]
    assert conv.parts == ["x", "kernels", "y", "dy", "rotated", "dx", "dkernels", "dbiases"]
    assert "rot180(K)" in conv.figures[conv.parts.index("dx")].layout.title.text
    pool = kinds["maxpool"]
    assert "mask" in pool.parts and pool.figures[pool.parts.index("mask")].data[0].zmin == 0
    relu = kinds["activation"]
    assert {"prime", "zeroed"} <= set(relu.parts)
    assert (
        "dX = Wᵀ dY" in kinds["dense"].figures[kinds["dense"].parts.index("dx")].layout.title.text
    )
    assert "p − y" in kinds["loss"].figures[-1].layout.title.text
    steps, maps = explain.saliency_strip(cached.run, PROBE, step)
    strip = backward.saliency_panel(cached, {"step": step, "probe": PROBE})
    validated(strip)
    assert "each scaled to its own largest" in strip.layout.title.text
    assert len(strip.layout.shapes) == 1  # the current step's tile, framed
    z = np.asarray(strip.data[0].z, dtype=float)
    assert np.nanmax(np.abs(z)) == pytest.approx(1.0)
    assert all(f"{int(s):,}" in t for s, t in zip(steps, strip.data[1].text, strict=True))
    assert sum("<b>" in text for text in strip.data[1].text) == 1  # the current step's


@pytest.mark.parametrize(
    "shape", [(7,), (3, 5), (16, 24, 24), (5, 12, 12), (16, 1, 5, 5), (4, 3, 2, 2)]
)
def test_a_click_anywhere_maps_back_to_the_element_drawn_there(shape):
    grid = bf.element_grid(shape)
    for index in np.ndindex(*shape):
        x, y = bf.pixel_of(shape, index)
        assert bf.element_at(shape, x, y) == index
        if len(shape) > 1:
            assert tuple(grid[y, x]) == index
    if len(shape) > 2:  # every other pixel is a gap
        gaps = [(x, y) for y, x in zip(*np.nonzero(grid[..., 0] < 0), strict=True)]
        assert all(bf.element_at(shape, x, y) is None for x, y in gaps)
        assert len(gaps) == grid.shape[0] * grid.shape[1] - int(np.prod(shape))
    assert bf.element_at(shape, -1, 0) is None and bf.element_at(shape, 10**6, 10**6) is None


# ---------------------------------------------------------------------- a click, verify


def click(client, app, drawn: dict, part: str, index: tuple, shape: tuple) -> dict:
    slot = drawn["parts"].index(part)
    x, y = bf.pixel_of(shape, index)
    values = {f"backward-part-{slot}.clickData": {"points": [{"curveNumber": 0, "x": x, "y": y}]}}
    values["backward-drawn.data"] = drawn
    prop = f"backward-part-{slot}.clickData"
    return send(client, app, taking(app, prop), values, (prop,))


@pytest.mark.parametrize(
    ("layer", "part", "index"),
    [(0, "dx", (0, 10, 15)), (0, "dkernels", (3, 0, 1, 2)), (3, "dy", (5, 2, 3)), (7, "dx", (9,))],
)
def test_a_click_lists_the_chain_rule_that_sums_to_the_clicked_value(app, runs, layer, part, index):
    client = app.server.test_client()
    step = last_step(runs)
    at = {"run": "lenet", "step": step, "probe": PROBE, "layer": layer}
    drawn = show(client, app, at)["backward-drawn"]["data"]
    cached = RunStore(runs).get("lenet")
    explained = backward.explained_at(cached, step, PROBE, layer)
    values = explained.backward.parts[part].values
    answer = click(client, app, drawn, part, index, values.shape)
    assert answer["backward-element"]["data"] == {"layer": layer, "part": part, "index": [*index]}
    rule = answer["backward-rule"]["children"]
    expected = explain.chain_rule(explained, part, index)
    assert text_of(rule[0]) == f"{expected.element} = {expected.formula}"
    total = float(text_of(find(rule, "backward-total")))
    clicked = text_of(find(rule, "backward-clicked"))
    assert backward.element_name(part, index) in clicked
    table = text_of(rule[1])
    shown = min(len(expected.terms), backward.SHOWN_TERMS)
    for term in expected.terms[:shown]:
        assert term.label in table
    if len(expected.terms) > shown:
        assert f"= the {len(expected.terms) - shown} smaller terms together" in table
    value = float(clicked.split("=")[1].split()[0])
    if part == "dy":  # made by the layer above from its own recorded dY: float16 apart
        assert total == pytest.approx(value, abs=2e-3 * np.abs(values).max())
    else:
        assert total == pytest.approx(value, rel=1e-6, abs=1e-12)
        assert value == pytest.approx(values[index], rel=1e-6, abs=1e-12)
    slot = drawn["parts"].index(part)
    for other in range(len(drawn["parts"])):  # the frame moves to the clicked element
        operations = answer[f"backward-part-{other}"]["figure"]["operations"]
        [(location, shapes)] = [(o["location"], o["params"]["value"]) for o in operations]
        assert location == ["layout", "shapes"]
        assert bool(shapes) == (other == slot)
    assert answer["backward-verify"]["disabled"] is False


def test_a_gap_between_tiles_chooses_nothing(app, runs):
    client = app.server.test_client()
    at = {"run": "lenet", "step": last_step(runs), "probe": PROBE, "layer": 1}
    drawn = show(client, app, at)["backward-drawn"]["data"]
    slot = drawn["parts"].index("dx")
    values = {f"backward-part-{slot}.clickData": {"points": [{"curveNumber": 0, "x": 24, "y": 3}]}}
    values["backward-drawn.data"] = drawn
    output = taking(app, "backward-part-0.clickData")
    request = body(app, output, values, (f"backward-part-{slot}.clickData",))
    response = client.post("/_dash-update-component", json=request)
    assert response.status_code == 204  # nothing to update


@pytest.mark.parametrize(
    ("layer", "part"), [(0, "dkernels"), (3, "dx"), (9, "dweights"), ("loss", "dz")]
)
def test_verify_agrees_on_a_correct_run(app, runs, layer, part):
    client = app.server.test_client()
    step = last_step(runs)
    at = {"run": "lenet", "step": step, "probe": PROBE, "layer": layer}
    answer = show(client, app, at)
    drawn = answer["backward-drawn"]["data"]
    cached = RunStore(runs).get("lenet")
    explained = backward.explained_at(cached, step, PROBE, backward.cursor(cached, at)[2])
    index = explain.default_element(explained, part)
    element = {"layer": layer, "part": part, "index": [*index]}
    values = {"backward-verify.n_clicks": 1, "backward-drawn.data": drawn}
    values["backward-element.data"] = element
    changed = ("backward-verify.n_clicks",)
    verified = send(client, app, taking(app, changed[0]), values, changed)
    text = text_of(verified["backward-verified"]["children"])
    assert f"{backward.element_name(part, index)}: agrees" in text
    for row in ("analytic (float64 backward)", "finite difference", "relative error"):
        assert row in text


def test_a_part_that_is_not_a_gradient_says_so_and_cannot_be_verified(app, runs):
    client = app.server.test_client()
    at = {"run": "lenet", "step": last_step(runs), "probe": PROBE, "layer": 1}
    drawn = show(client, app, at)["backward-drawn"]["data"]
    answer = click(client, app, drawn, "mask", (0, 0, 0), (16, 24, 24))
    assert "no sum to show here" in text_of(answer["backward-rule"]["children"])
    assert answer["backward-verify"]["disabled"] is True


# ---------------------------------------------------------------------- what it refuses


def test_an_older_run_is_one_line_and_the_other_panels_keep_working(app, runs):
    client = app.server.test_client()
    answer = show(client, app, {"run": "old", "step": 40, "probe": PROBE, "layer": 0})
    notice = answer["backward-title"]["children"]
    assert "older labkit" in notice and "\n" not in notice
    assert notice.startswith("old: ") and str(runs) not in notice  # no path of the server
    assert answer["backward-body"]["style"] == {"display": "none"}
    assert all(answer[f"backward-slot-{i}"]["style"] == {"display": "none"} for i in range(8))
    page = {"run.value": "old", "record.value": 1, "probe.value": PROBE, "feature-layer.value": 0}
    features = post(client, app, "features.figure", page, ["run.value"])
    assert features.status_code == 200
    assert features.get_json()["response"]["features"]["figure"]["data"]
    at = {"run": "old", "step": 40, "probe": PROBE, "layer": 0}
    changed = ("backward-at.data",)
    strip = send(client, app, "backward-saliency.figure", {"backward-at.data": at}, changed)
    assert "no saliency" in json.dumps(strip["backward-saliency"]["figure"])


def test_a_bad_cursor_is_a_message_in_the_view(app):
    client = app.server.test_client()
    answer = show(client, app, {"run": "lenet", "step": 1, "probe": 0, "layer": 99})
    assert "no layer 99" in answer["backward-title"]["children"]
    answer = show(client, app, {"run": "../elsewhere", "step": 1, "probe": 0, "layer": 0})
    assert all(answer[f"backward-slot-{i}"]["style"] == {"display": "none"} for i in range(8))


# ---------------------------------------------------------------------- step moves, the address


def test_a_step_move_sends_only_the_parts_values(app, runs):
    client = app.server.test_client()
    steps = RunStore(runs).get("lenet").run.steps
    at = {"run": "lenet", "step": int(steps[-1]), "probe": PROBE, "layer": 3}
    first = show(client, app, at)
    drawn, element = first["backward-drawn"]["data"], first["backward-element"]["data"]
    moved = show(client, app, {**at, "step": int(steps[-2])}, element, drawn)
    allowed = set(bf.VALUE_KEYS)
    for slot in range(len(drawn["parts"])):
        patch = moved[f"backward-part-{slot}"]["figure"]
        assert patch["__dash_patch_update"] == "__dash_patch_update"
        assert {o["location"][-1] for o in patch["operations"]} <= allowed
    assert moved["backward-element"]["data"] == element  # the same element, at the new step
    assert moved["backward-drawn"]["data"]["step"] == int(steps[-2])
    assert "customdata" not in json.dumps(moved)  # the hover's indices stay as they were
    assert len(json.dumps(moved)) < 0.6 * len(json.dumps(first))


def test_the_view_costs_a_step_move_nothing_until_it_is_opened(app):
    """Only the browser's cursor (view.js) takes the slider; no server callback does."""
    for key, spec in app.callback_map.items():
        inputs = {f"{d['id']}.{d['property']}" for d in spec["inputs"]}
        if any(output.startswith("backward") for output in outputs_of(key)):
            assert "record.value" not in inputs or "callback" not in spec, key


def test_the_address_opens_the_view_on_its_layer_and_element(runs):
    store = RunStore(runs)
    search = "?run=lenet&backward=03-Convolutional&part=dx&element=2,5,7"
    name, _, wanted, _ = callbacks.first_view(store, search)
    chosen = callbacks.apply_view(callbacks.run_controls(store, name, None), wanted)
    assert chosen["backward"] == 3
    assert chosen["element"] == {"layer": 3, "part": "dx", "index": [2, 5, 7]}
    controls = callbacks.run_controls(store, name, None)
    assert callbacks.apply_view(controls, {"backward": "loss"})["backward"] == explain.LOSS
    assert "backward" not in callbacks.apply_view(controls, {"backward": "nope"})
    assert view.as_index("1,2,3,4,5") is None and view.as_index("1,x") is None
    assert view.as_index("0") == [0]


# ---------------------------------------------------------------------- in a browser


def agreeing_element(runs, step: int) -> tuple[int, ...]:
    """The largest |dX| of the first convolution, after the largest (the view's default:
    a click must change it), that verify judges (not on a kink) and finds right."""
    explained = backward.explained_at(RunStore(runs).get("lenet"), step, PROBE, 0)
    values = explained.backward.parts["dx"].values
    for flat in np.argsort(-np.abs(values), axis=None)[1:50]:
        index = tuple(int(i) for i in np.unravel_index(flat, values.shape))
        checked = explain.verify(explained, "dx", index)
        if not checked.on_kink and checked.agrees:
            return index
    raise AssertionError("no element of dX that verify judges")


def hover_and_click(driver, graph: str, x: float, y: float) -> None:
    """Point at data ``(x, y)`` of ``graph`` until plotly hovers it, then click: a
    click on a heatmap is a click on the point hovered."""
    plot = driver.find_element("css selector", f"#{graph} .js-plotly-plot")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", plot)
    px, py, width, height = driver.execute_script(
        "const p = arguments[0], L = p._fullLayout, r = p.getBoundingClientRect();"
        f" return [L.xaxis._offset + L.xaxis.l2p({x}), L.yaxis._offset + L.yaxis.l2p({y}),"
        " r.width, r.height];",
        plot,
    )
    ActionChains(driver).move_to_element(plot).move_by_offset(
        int(px - width / 2), int(py - height / 2)
    ).perform()  # from the centre: the same in every selenium 4
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return (arguments[0]._hoverdata || []).length > 0", plot)
    )
    ActionChains(driver).click().perform()


@pytest.mark.browser
@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver (installed by .ci/run)",
)
def test_in_a_browser_a_click_shows_the_sum_and_verify_agrees(dash_duo, runs):
    step = last_step(runs)
    index = agreeing_element(runs, step)
    name = backward.element_name("dx", index)
    dash_duo.start_server(create_app(runs))
    dash_duo.driver.get(f"{dash_duo.server_url}/?run=lenet&backward=00-Convolutional&probe=3")
    dash_duo.wait_for_contains_text("#backward-title", "probe 3 (digit", timeout=20)
    dash_duo.wait_for_contains_text("#backward-part-5", "input gradient dX", timeout=20)
    dash_duo.wait_for_contains_text("#backward-rule", "the clicked dX[", timeout=20)  # default
    x, y = bf.pixel_of((1, 28, 28), index)
    hover_and_click(dash_duo.driver, "backward-part-5", x, y)
    dash_duo.wait_for_contains_text("#backward-rule", f"the clicked {name}", timeout=20)
    rule = dash_duo.find_element("#backward-rule").text
    assert f"{name} = Σ_d,u,v" in rule and "smaller terms together" in rule
    total = float(dash_duo.find_element("#backward-total").text)
    clicked = float(rule.split(f"the clicked {name} = ")[1].split()[0])
    assert total == pytest.approx(clicked, rel=1e-6)
    WebDriverWait(dash_duo.driver, 20).until(  # the frame moved to the clicked cell
        lambda d: d.execute_script(
            "const s = document.querySelector('#backward-part-5 .js-plotly-plot').layout.shapes;"
            f" return s.length > 0 && s[0].x0 < {x} && {x} < s[0].x1"
        )
    )
    dash_duo.find_element("#backward-verify").click()
    dash_duo.wait_for_contains_text("#backward-verified", f"{name}: agrees", timeout=20)
    assert "finite difference" in dash_duo.find_element("#backward-verified").text
    assert f"element={','.join(map(str, index))}" in dash_duo.driver.current_url
    z = "return document.querySelector('#backward-part-3 .js-plotly-plot').data[0].z;"
    before = dash_duo.driver.execute_script(z)
    dash_duo.find_element("#back").click()  # a step move: the parts' values patched
    previous = int(RunStore(runs).get("lenet").run.steps[-2])
    dash_duo.wait_for_contains_text("#backward-title", f"at step {previous:,}", timeout=20)
    dash_duo.wait_for_contains_text("#backward-rule", f"the clicked {name}", timeout=20)
    WebDriverWait(dash_duo.driver, 20).until(lambda d: d.execute_script(z) != before)
    assert dash_duo.find_element("#backward-verified").text == ""  # of the other step
    assert dash_duo.get_logs() == []


def test_a_large_matrix_is_sent_in_255_levels_and_a_small_one_exactly():
    rng = np.random.default_rng(0)
    big = rng.normal(size=(100, 3380))
    fig = bf.part_figure(big, "weights W", symbol="W")
    validated(fig)
    z = np.asarray(fig.data[0].z)
    assert z.dtype == np.uint8 and fig.data[0].zmid == bf.LEVELS  # 127: the level of 0
    level = np.round((big / np.abs(big).max() + 1) * bf.LEVELS)
    np.testing.assert_allclose(z, level, atol=1)  # float32 rounds a few halves the other way
    assert fig.data[0].colorbar.ticktext[2] == "0"
    small = rng.normal(size=(128, 512))  # lenet's W: exact
    exact = bf.part_figure(small, "weights W", symbol="W").data[0]
    np.testing.assert_array_equal(exact.z, small.astype(np.float32))
