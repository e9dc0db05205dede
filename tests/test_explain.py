"""The probes' recorded backward pass and its explainer (labkit.backprop, labkit.explain):
the shown values equal the recorded gradients and the tutorial's per-sample layers, the
chain-rule terms sum to the value, and "verify" agrees on right layers, not on mutants."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mutants import ConvNoKernelFlip, DenseInputScaled
from reference_twins import to_reference

from labkit import explain as E
from labkit.backprop import explain
from labkit.data import MNIST, load_mnist
from labkit.errors import LabkitError
from labkit.layers import softmax
from labkit.losses import softmax_cross_entropy_prime
from labkit.models import lenet, tutorial
from labkit.network import Network
from labkit.optim import Adam
from labkit.recorder import Recorder, RecordSchedule, choose_probes
from labkit.recording import decode_gradients, encode_gradients, open_recording
from labkit.runs.format import MANIFEST
from labkit.train import Trainer
from labkit.usercode import with_layers


def record(path, network: Network, steps: int = 12) -> None:
    """Train ``network`` for ``steps`` steps of 50 sample digits, recording every 4th."""
    sample = load_mnist("sample")
    count = 50 * steps
    data = MNIST(sample.x_train[:count], sample.y_train[:count], sample.x_test, sample.y_test, "")
    probes = choose_probes(data.y_test)
    recorder = Recorder(
        path, data.x_test[probes], data.y_test[probes], schedule=RecordSchedule(every=4)
    )
    trainer = Trainer(network, Adam(network), batch_size=50, progress=False, callbacks=[recorder])
    trainer.fit(data, 1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    record(root / "lenet", lenet(seed=0))
    record(root / "tutorial", tutorial(seed=0))
    return root


@pytest.fixture(scope="module")
def mutant_runs(tmp_path_factory):
    """lenet with the second convolution's kernel flip forgotten, and with the first
    dense layer's input gradient 0.1% too large (subtle: float16 cannot show it)."""
    root = tmp_path_factory.mktemp("mutants")
    for name, position, mutant in (
        ("noflip", 3, ConvNoKernelFlip),
        ("scaled", 7, DenseInputScaled),
    ):
        network = lenet(seed=0)
        layer = network.layers[position]
        wrong = mutant.__new__(mutant)
        wrong.__dict__.update(layer.__dict__)
        network.layers[position] = wrong
        record(root / name, network, steps=4)
    return root


def test_encoding_keeps_tiny_gradients_to_float16_precision_of_each_probe():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 4, 5)).astype(np.float32)
    values[0] *= 1e-9  # would be all zeros (below float16's subnormals) unscaled
    values[2] = 0
    stored, scale = encode_gradients(values)
    assert stored.dtype == np.float16 and scale.shape == (3,)
    back = decode_gradients(stored, scale)
    for probe in range(2):
        largest = np.abs(values[probe]).max()
        assert np.abs(back[probe] - values[probe]).max() <= largest * 2**-11
    assert back[0].any() and np.array_equal(back[2], values[2])


def step_and_recording(runs, name):
    recording = open_recording(runs / name)
    return recording, int(recording.steps[-1])


@pytest.mark.parametrize("name", ["lenet", "tutorial"])
def test_recorded_gradients_equal_the_tutorials_per_sample_layers(runs, name):
    """Each probe's recorded gradient at every layer equals the reference layers'
    backward of that probe's own softmax cross-entropy, to float16's precision."""
    recording, step = step_and_recording(runs, name)
    network = recording.network_at(step).astype(np.float64)
    recorded = recording.probe_gradients(step)
    keys = [entry["key"] for entry in recording.layers]
    for probe in (0, 7):
        twins = [to_reference(layer) for layer in network.layers]
        h = recording.probe_images[probe].astype(np.float64)
        for twin in twins:  # per-sample layouts: images (d, h, w), vectors (n, 1)
            h = twin.forward(h)
        target = np.zeros((1, 10))
        target[0, recording.probe_labels[probe]] = 1
        grad = softmax_cross_entropy_prime(target, h.reshape(1, -1)).reshape(h.shape)
        for position in reversed(range(len(twins))):
            want = recorded[keys[position]][probe].reshape(-1)
            got = np.asarray(grad).reshape(-1)
            assert np.abs(want - got).max() <= 2e-3 * np.abs(got).max(), keys[position]
            grad = twins[position].backward(grad)
        saliency = recorded["input"][probe].reshape(-1)
        assert np.abs(saliency - grad.reshape(-1)).max() <= 2e-3 * np.abs(grad).max()


@pytest.mark.parametrize("name", ["lenet", "tutorial"])
def test_every_part_shown_equals_the_record_and_the_reference_layers(runs, name):
    """The explainer's dY is the record; its dX, from the formula, equals the record of
    the layer below (float16) and each reference layer's backward (float64, 1e-9)."""
    recording, step = step_and_recording(runs, name)
    passed = E.probe_pass(recording, step, 5)
    for position, layer in enumerate(passed.network.layers):
        explained = E.explain_at(passed, position)
        parts = explained.backward.parts
        key = passed.keys[position]
        assert np.array_equal(parts["dy"].values, passed.recorded[key].astype(np.float64))
        assert explained.agreement <= 2e-3, key
        twin = to_reference(layer)
        x = passed.inputs[position].astype(np.float64)
        twin.forward(x.reshape(-1, 1) if x.ndim == 1 else x)
        dy = parts["dy"].values
        dx = twin.backward(dy.reshape(-1, 1) if dy.ndim == 1 else dy)
        np.testing.assert_allclose(parts["dx"].values.reshape(-1), np.ravel(dx), atol=1e-9)
        for name_, value in twin.grads.items():
            np.testing.assert_allclose(
                parts[f"d{name_}"].values.reshape(-1), np.ravel(value), atol=1e-9, err_msg=key
            )
    loss = E.explain_at(passed, len(passed.keys))
    p = loss.backward.parts
    assert loss.agreement <= 2e-3
    np.testing.assert_allclose(p["dz"].values, p["p"].values - p["target"].values)


@pytest.mark.parametrize("name", ["lenet", "tutorial"])
def test_chain_rule_terms_sum_to_the_shown_value_largest_first(runs, name):
    recording, step = step_and_recording(runs, name)
    passed = E.probe_pass(recording, step, 2)
    rng = np.random.default_rng(0)
    checked = 0
    for position in range(len(passed.keys) + 1):
        explained = E.explain_at(passed, position)
        for part in [*explained.backward.rules, "dy"] if position < len(passed.keys) else ["dz"]:
            values = explained.backward.parts[part].values
            for index in [E.default_element(explained, part)] + [
                tuple(int(rng.integers(n)) for n in values.shape) for _ in range(3)
            ]:
                rule = E.chain_rule(explained, part, index)
                magnitudes = [abs(term.value) for term in rule.terms]
                assert magnitudes == sorted(magnitudes, reverse=True)
                for term in rule.terms:
                    assert term.value == pytest.approx(float(np.prod(term.factors)), rel=1e-12)
                if part == "dy":  # made by the layer above from its float16 record
                    assert abs(rule.total - values[index]) <= 2e-3 * np.abs(values).max()
                else:
                    assert rule.total == pytest.approx(values[index], rel=1e-9, abs=1e-12)
                checked += 1
    assert checked > 40


def test_a_convolutions_input_gradient_element_lists_every_kernel_tap(runs):
    """dX[c,i,j] of a k×k convolution with D kernels away from the border: D·k·k terms."""
    recording, step = step_and_recording(runs, "lenet")
    explained = E.explain_layer(recording, "03-Convolutional", 0, step)
    rule = E.chain_rule(explained, "dx", (2, 6, 6))
    assert len(rule.terms) == 32 * 5 * 5
    assert rule.terms[0].label.startswith("dY[") and "× K[" in rule.terms[0].label
    corner = E.chain_rule(explained, "dx", (2, 0, 0))
    assert len(corner.terms) == 32  # only K[d, c, 0, 0] touches the corner


@pytest.mark.parametrize("name", ["lenet", "tutorial"])
def test_verify_agrees_on_right_layers(runs, name):
    recording, step = step_and_recording(runs, name)
    passed = E.probe_pass(recording, step, 4)
    for position in range(len(passed.keys) + 1):
        explained = E.explain_at(passed, position)
        parts = [explained.gradient_part] + [
            p
            for p in explained.backward.parts
            if p.startswith("d")
            and p[1:]
            in (passed.network.layers[position].params if position < len(passed.keys) else {})
        ]
        for part in parts:
            verification = E.verify(explained, part, E.default_element(explained, part))
            assert verification.agrees or verification.on_kink, verification.line()
            assert verification.relative_error < 1e-6 or verification.on_kink
            assert verification.shown == pytest.approx(verification.analytic, rel=3e-3)


@pytest.mark.parametrize("run, layer", [("noflip", "03-Convolutional"), ("scaled", "07-Dense")])
def test_verify_disagrees_on_a_mutant_and_names_the_element(mutant_runs, run, layer):
    recording = open_recording(mutant_runs / run)
    model = with_layers(None, [ConvNoKernelFlip, DenseInputScaled])
    step = int(recording.steps[-1])
    passed = E.probe_pass(recording, step, 1, model)
    explained = E.explain_at(passed, recording.layer_index(layer))
    element = E.default_element(explained, "dx")
    verification = E.verify(explained, "dx", element)
    assert not verification.agrees and "DISAGREES" in verification.line()
    assert verification.element == f"dx[{','.join(map(str, element))}]"
    # the parameters' gradients of the same layer are right, and say so
    name = next(p for p in explained.backward.parts if p in ("dkernels", "dweights"))
    assert E.verify(explained, name, E.default_element(explained, name)).agrees


def test_the_formula_shows_a_wrong_recorded_input_gradient(mutant_runs):
    """Without the kernel flip the layer's recorded dX is far from dY ∗full rot180(K)."""
    recording = open_recording(mutant_runs / "noflip")
    model = with_layers(None, [ConvNoKernelFlip])
    explained = E.explain_layer(recording, 3, 0, int(recording.steps[-1]), model)
    assert explained.agreement > 0.1


def test_an_older_run_and_bad_input_are_one_line_errors(runs, tmp_path):
    import shutil

    recording, step = step_and_recording(runs, "lenet")
    with pytest.raises(LabkitError, match="probe 16 is out of range: the run has probes 0..15"):
        E.probe_pass(recording, step, 16)
    explained = E.explain_layer(recording, 0, 0, step)
    with pytest.raises(LabkitError, match=r"element 1,0,0 is outside dx of 00-Convolutional"):
        E.chain_rule(explained, "dx", (1, 0, 0))
    with pytest.raises(LabkitError, match="no part 'dweights'"):
        E.verify(explained, "dweights", (0, 0))
    with pytest.raises(LabkitError, match="cannot verify 'kernels'"):
        E.verify(explained, "kernels", (0, 0, 0, 0))  # a parameter, not a gradient
    with pytest.raises(LabkitError, match="not comma-separated integers"):
        E.parse_element("1,x")
    old = tmp_path / "old"
    shutil.copytree(runs / "lenet", old)
    manifest = json.loads((old / MANIFEST).read_text())
    for name in [n for n in manifest["record_arrays"] if n.startswith("backward/")]:
        del manifest["record_arrays"][name]
        manifest["consolidated"].pop(name, None)
    (old / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(LabkitError, match="recorded by an older labkit") as error:
        E.explain_layer(open_recording(old), 0, 0, step)
    assert "\n" not in str(error.value)


def test_explain_maths_is_the_layers_own_on_one_sample():
    """labkit.backprop on random inputs against each layer's batched backward (batch 1)."""
    rng = np.random.default_rng(3)
    network = lenet(seed=1, dtype=np.float64)
    for layer in network.layers:
        for name, value in layer.params.items():
            layer.params[name] = rng.standard_normal(value.shape)
    h = rng.standard_normal((1, 1, 28, 28))
    for layer in network.layers:
        x = h
        h = layer.forward(x)
        dy = rng.standard_normal(h.shape)
        dx = layer.backward(dy)
        shown = explain(layer, x[0], dy[0])
        np.testing.assert_allclose(shown.parts["dx"].values.reshape(-1), dx.reshape(-1), atol=1e-12)
        if "y" in shown.parts:
            np.testing.assert_allclose(
                shown.parts["y"].values.reshape(-1), h.reshape(-1), atol=1e-12
            )
        for name, grad in layer.grads.items():
            np.testing.assert_allclose(shown.parts[f"d{name}"].values, grad, atol=1e-12)


def test_the_loss_formula_forgives_float32_rounding_of_p_but_not_a_wrong_gradient(runs):
    recording, step = step_and_recording(runs, "lenet")
    passed = E.probe_pass(recording, step, 6)
    last = passed.keys[-1]
    explained = E.explain_at(passed, len(passed.keys))
    assert explained.formula_agrees
    dz = explained.backward.parts["dz"].values
    passed.recorded[last] = (dz * 1.05).astype(np.float32)  # 5% off: a wrong loss gradient
    assert E.explain_at(passed, len(passed.keys)).formula_agrees is False
    # a probe the network is sure of (p = 1 - 2e-9), recorded as training computes it:
    # in float32, where 1 - p rounds to 0 or 6e-8
    logits = np.full(10, -22.0, dtype=np.float32)
    logits[passed.label] = 0.0
    passed.inputs[-1] = logits
    target = np.eye(10, dtype=np.float32)[passed.label]
    passed.recorded[last] = softmax(logits[None])[0] - target
    sure = E.explain_at(passed, len(passed.keys))
    assert np.abs(sure.backward.parts["dz"].values).max() < 1e-8
    assert sure.formula_agrees
