"""Your own layers and networks through the CLI: --model FILE.py:NAME, module:NAME and
FILE.json in train, evaluate, gradcheck, inspect, runs list and the dashboard's check;
and every bad --model is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import re
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dashboards import callbacks
from dashboards.store import RunStore
from labkit.cli import main
from labkit.errors import LabkitError
from labkit.layers import Dense, ReLU, registry
from labkit.network import Network, read_weights
from labkit.usercode import load_model, load_network

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TEMP = Path(tempfile.gettempdir()).resolve()  # where tmp_path puts a test's own files
LEAKY = f"{EXAMPLES / 'leaky_net.py'}:build"
QUICK = ["--epochs", "1", "--no-progress", "--record-every", "20"]


@pytest.fixture(autouse=True)
def _forget_user_modules():
    """--model imports the users' files into sys.modules: drop them after each test (and
    only them: a library's submodule imported on first use, dropped, would be imported
    anew beside the old one's objects, as matplotlib 3.11's Artist checks then show)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if _is_a_users_file(sys.modules[name]):
            del sys.modules[name]


def _is_a_users_file(module) -> bool:
    """Whether ``module`` was imported from a user's file: the examples or a test's tmp_path."""
    file = getattr(module, "__file__", None)
    if file is None:
        return False
    path = Path(file).resolve()
    return path.is_relative_to(EXAMPLES) or path.is_relative_to(TEMP)


def one_line_error(capsys, code) -> str:
    assert code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("user") / "leaky"
    assert main(["train", "--model", LEAKY, *QUICK, "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------ the flow, end to end


def test_a_user_network_trains_records_and_keeps_its_model_text(leaky_run, capsys):
    saved = read_weights(leaky_run / "weights.npz")
    assert saved.model == LEAKY
    assert saved.architecture[1] == {"class": "leaky_net:LeakyReLU", "config": {"slope": 0.01}}
    manifest = json.loads((leaky_run / "manifest.json").read_text())
    assert manifest["model"] == LEAKY and manifest["layers"][1]["key"] == "01-LeakyReLU"
    assert main(["runs", "list", str(leaky_run.parent)]) == 0
    assert LEAKY in capsys.readouterr().out


def test_reading_it_back_needs_the_model_and_says_which(leaky_run, capsys):
    message = one_line_error(capsys, main(["evaluate", str(leaky_run)]))
    assert "'leaky_net:LeakyReLU' is not one of labkit's" in message
    assert f"--model {LEAKY}" in message
    assert main(["evaluate", str(leaky_run), "--model", LEAKY]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_gradcheck_and_inspect_a_user_run(leaky_run, capsys):
    run = ["--run", str(leaky_run)]
    message = one_line_error(capsys, main(["gradcheck", *run, "--fast"]))
    assert "leaky_net:LeakyReLU" in message
    assert main(["gradcheck", *run, "--model", LEAKY, "--fast"]) == 0
    out = capsys.readouterr().out
    assert "01-LeakyReLU" in out and "all passed" in out
    figures = leaky_run / "figs"
    assert main(["inspect", str(leaky_run), "--layer", "1", "--out", str(figures)]) == 0
    assert (figures / f"features-01-LeakyReLU-step{63}-probe0.png").is_file()


def test_a_different_model_is_refused_naming_the_first_difference(leaky_run, capsys):
    for command in (
        ["evaluate", str(leaky_run), "--model", "lenet"],
        ["gradcheck", "--run", str(leaky_run), "--model", "lenet"],
        ["inspect", str(leaky_run), "--model", "tutorial"],
    ):
        message = one_line_error(capsys, main(command))
        assert "is not the network of" in message and "layers here, 5 saved" in message
    other = f"{EXAMPLES / 'small_net.json'}"
    message = one_line_error(capsys, main(["evaluate", str(leaky_run), "--model", other]))
    assert "layer 1 is ReLU here, leaky_net:LeakyReLU saved" in message


def test_the_dashboards_check_button_rebuilds_a_user_run(leaky_run):
    [option] = callbacks.run_options(RunStore(leaky_run.parent))
    assert option["label"] == f"leaky (completed, --model {LEAKY})"
    without = RunStore(leaky_run.parent)
    cached = without.get(leaky_run.name)
    with pytest.raises(LabkitError, match=re.escape(f"--model {LEAKY}")):
        callbacks.check_at_step(cached, 2, without.model_for(cached.run))
    store = RunStore(leaky_run.parent, [load_model(LEAKY)])
    cached = store.get(leaky_run.name)
    assert callbacks.check_at_step(cached, 2, store.model_for(cached.run)).endswith("all passed")
    assert cached.run.gradchecks[-1]["step"] == int(cached.run.steps[2])


def test_a_json_architecture_trains_with_no_code(tmp_path, capsys):
    out = tmp_path / "json"
    spec = str(EXAMPLES / "small_net.json")
    assert main(["train", "--model", spec, *QUICK, "--out", str(out)]) == 0
    assert "training small_net" in capsys.readouterr().out
    assert main(["evaluate", str(out)]) == 0  # labkit's layers only: nothing to pass
    first = load_model(spec, seed=3).network.layers[4].params["weights"]
    again = load_model(spec, seed=3).network.layers[4].params["weights"]
    np.testing.assert_array_equal(first, again)  # --seed fixes a JSON network's weights


def test_a_module_name_works_like_a_file(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text((EXAMPLES / "leaky_net.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model("mypkg.nets:build", seed=1)
    assert type(model.network.layers[1]).__module__ == "mypkg.nets"
    assert [cls.__name__ for cls in model.classes] == ["LeakyReLU"]
    assert model.label == "nets"


def test_a_layer_without_config_trains_and_is_rebuilt_from_its_code(tmp_path, capsys):
    source = tmp_path / "noconfig.py"
    source.write_text(
        textwrap.dedent(
            """
            from labkit import Network
            from labkit.layers import Flatten, Dense, Layer

            class Double(Layer):
                def forward(self, input):
                    return 2 * input
                def backward(self, output_gradient, learning_rate=None):
                    return 2 * output_gradient

            def build(seed=0):
                return Network([Flatten(), Double(), Dense(784, 10, rng=seed)])
            """
        )
    )
    spec, out = f"{source}:build", tmp_path / "run"
    assert main(["train", "--model", spec, *QUICK, "--out", str(out)]) == 0
    assert read_weights(out / "weights.npz").architecture[1]["config"] is None
    message = one_line_error(capsys, main(["evaluate", str(out)]))
    assert "noconfig:Double" in message and f"--model {spec}" in message
    assert main(["evaluate", str(out), "--model", spec]) == 0


# ------------------------------------------------------------------- Python: layers=, register


def test_network_load_takes_the_users_classes(leaky_run):
    model = load_model(LEAKY)
    [leaky] = model.classes
    network = Network.load(leaky_run / "weights.npz", layers=[leaky])
    assert type(network.layers[1]) is leaky and network.layers[1].slope == 0.01
    with pytest.raises(LabkitError, match="leaky_net:LeakyReLU"):
        Network.load(leaky_run / "weights.npz")


def test_registered_classes_resolve_but_never_another_modules_namesake(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})

    class Scale(ReLU):
        def config(self):
            return {}

    Scale.__module__, Scale.__qualname__ = "their_module", "Scale"
    registry.register_layer(Scale)
    assert registry.resolve("their_module:Scale") is Scale
    with pytest.raises(registry.UnknownLayerClass):
        registry.resolve("other_module:Scale")  # same name, another module: not guessed
    assert registry.resolve("other_module:Scale", layers=[Scale]) is Scale  # handed in
    with pytest.raises(TypeError):
        registry.register_layer(int)


def test_reading_a_file_never_imports_the_module_it_names(tmp_path):
    network = Network([Dense(4, 2, rng=0)])
    path = tmp_path / "w.npz"
    network.save(path)
    arrays = dict(np.load(path))
    arrays["__architecture__"] = np.array(
        json.dumps([{"class": "labkit_never_imported_probe:Dense", "config": {}}])
    )
    np.savez(path, **arrays)
    with pytest.raises(LabkitError, match="labkit_never_imported_probe:Dense"):
        Network.load(path)
    assert "labkit_never_imported_probe" not in sys.modules


# ------------------------------------------------------------------------------ bad input

BAD_FILES = {
    "raises.py": "import numpy\n\nraise ValueError('boom in my module')\n",
    "syntax.py": "def build(:\n    pass\n",
    "imports.py": "import a_module_that_is_not_installed_xyz\n",
    "notnet.py": "def build(seed=0):\n    return 42\n",
    "crashes.py": "def build(seed=0):\n    return [][1]\n",
    "chain.py": textwrap.dedent(
        """
        from labkit import Network
        from labkit.layers import Convolutional, Dense, ReLU

        def build(seed=0):
            return Network([Convolutional((1, 28, 28), 3, 4), ReLU(), Dense(10, 10)])
        """
    ),
    "classes.py": textwrap.dedent(
        """
        from labkit import Network
        from labkit.layers import Flatten, Dense

        def build(seed=0):
            return Network([Flatten(), Dense(784, 7)])
        """
    ),
    "unknown.json": json.dumps([{"class": "Conv3D", "config": {}}]),
    "badconfig.json": json.dumps([{"class": "Dense", "config": {"size": 3}}]),
    "notjson.json": "[{not json",
    "notlist.json": json.dumps({"class": "Dense"}),
}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("missing.py:build", "missing.py: no such file"),
        ("raises.py:build", "raises.py:3: ValueError: boom in my module"),
        ("syntax.py:build", "syntax.py:1: SyntaxError"),
        ("imports.py:build", "No module named 'a_module_that_is_not_installed_xyz'"),
        ("notnet.py:build", "build gives int, not a Network"),
        ("notnet.py:nothing", "defines no 'nothing'"),
        ("crashes.py:build", "crashes.py:2: IndexError: list index out of range"),
        ("chain.py:build", "02-Dense does not take 01-ReLU's output (4, 26, 26) per sample"),
        ("classes.py:build", "01-Dense gives (7,) per sample; the loss needs 10 outputs"),
        ("unknown.json", "layer class 'Conv3D' is not one of labkit's"),
        ("badconfig.json", "layer 0 (Dense): bad config"),
        ("notjson.json", "not valid JSON"),
        ("notlist.json", "expected a non-empty list of layers"),
        ("no_such_module_xyz:build", "no module named 'no_such_module_xyz'"),
        ("lenet:build", "no module named 'lenet'"),
        ("justaname", "not a preset (lenet, tutorial)"),
    ],
)
def test_a_bad_model_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, model, message):
    for name, text in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    line = one_line_error(capsys, main(["train", "--model", model, *QUICK, "--out", str(out)]))
    assert message in line
    assert not out.exists()


STUDENT = textwrap.dedent(
    """
    from tutorial_mutants import Dense, DenseInputAfterUpdate, seeded  # the student's layers

    right, wrong = seeded(lambda: (Dense(4, 3), DenseInputAfterUpdate(4, 3)), 0)
    right.input_shape = wrong.input_shape = (4, 1)  # so the check draws one sample itself
    """
)


def test_gradcheck_takes_one_layer_of_yours_labkit_style_or_the_tutorials(tmp_path, capsys):
    source = tmp_path / "student.py"
    source.write_text(STUDENT)
    assert main(["gradcheck", "--model", f"{EXAMPLES / 'leaky_net.py'}:LeakyReLU"]) == 0
    assert "LeakyReLU(slope=0.01)  input   (2, 3, 4, 4)" in capsys.readouterr().out
    assert main(["gradcheck", "--model", f"{source}:right"]) == 0
    capsys.readouterr()
    assert main(["gradcheck", "--model", f"{source}:wrong"]) == 1
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Dense")]
    failed = {line.split()[1] for line in rows if "FAIL" in line}
    assert failed == {"input"} and "from the updated parameters" in rows[0]


def test_a_file_named_like_an_imported_module_never_shadows_it(tmp_path):
    source = tmp_path / "json.py"
    source.write_text((EXAMPLES / "leaky_net.py").read_text())
    model = load_model(f"{source}:build")
    assert type(model.network.layers[1]).__module__ == "labkit_user_json"
    assert json.dumps([1]) == "[1]" and sys.modules["json"].__file__ != str(source)


def test_a_tutorial_style_layer_in_a_network_is_one_line(tmp_path, capsys):
    source = tmp_path / "student_net.py"
    build = "def build(seed=0):\n    return Network([Dense(784, 10)])\n"
    source.write_text(STUDENT + "\nfrom labkit import Network\n\n" + build)
    message = one_line_error(capsys, main(["train", "--model", f"{source}:build", *QUICK]))
    assert "layer 0 (Dense) does not follow labkit's Layer contract" in message


USER_CRASHES = {
    "torch_net.py": "import a_missing_package_xyz\n",  # the file's name is not the module
    "bad_layer.py": textwrap.dedent(
        """
        from labkit.layers import Layer

        class Bad(Layer):
            def forward(self, input):
                raise TypeError("my forward is broken")
            def backward(self, output_gradient, learning_rate=None):
                return output_gradient
        """
    ),
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gradcheck", "--model", "torch_net.py:x"], "No module named 'a_missing_package_xyz'"),
        (["gradcheck", "--model", "bad_layer.py:Bad"], "forward raised TypeError: my forward"),
    ],
)
def test_the_users_own_crashes_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    for name, text in USER_CRASHES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(capsys, main(args))
    assert "torch_net" not in sys.modules  # a file that failed to run is not left behind


def test_a_user_constructor_that_raises_is_one_line(tmp_path):
    class Fussy(ReLU):
        def __init__(self, level=1):
            raise RuntimeError("needs a GPU")

        def config(self):
            return {"level": 1}

    spec = [{"class": registry.class_name(Fussy), "config": {"level": 1}}]
    with pytest.raises(LabkitError, match="layer 0 .*bad config \\(needs a GPU\\)"):
        Network.from_architecture(spec, layers=[Fussy])


def test_the_oracle_refuses_a_layer_it_cannot_mirror_before_any_check(monkeypatch):
    import labkit.checks as checks

    monkeypatch.setattr(checks, "check_layer", lambda *a, **k: pytest.fail("checked first"))
    network = load_model(LEAKY).network
    with pytest.raises(LabkitError, match="01-LeakyReLU: no TensorFlow counterpart"):
        checks.check_all(network, oracle="tensorflow")


def test_weights_read_with_layers_keep_their_saved_dtype(tmp_path, leaky_run):
    model = load_model(LEAKY)
    network = load_network(leaky_run / "weights.npz", model).astype(np.float64)
    network.save(tmp_path / "w.npz")
    again = load_network(tmp_path / "w.npz", layers=model.classes)
    assert again.layers[0].params["kernels"].dtype == np.float64
