"""``--model``: a preset, a JSON architecture, or the user's own Python, as a network.

The forms (one home for them; every subcommand that takes ``--model`` comes here):

- ``lenet``, ``tutorial``: the presets;
- ``FILE.json``: a list of layers ``[{"class": "Convolutional", "config": {...}}, ...]``,
  the form :meth:`Network.save` stores — labkit's layers only, no code at all;
- ``PATH/TO/FILE.py:NAME`` or ``package.module:NAME``: NAME is a :class:`Network`, or a
  function returning one (called with ``seed=`` when it takes it); where a single layer
  may be checked (``labkit gradcheck``), NAME may also be a layer, or a class or function
  that makes one.

Only this text, which the user typed, ever imports code: the layer classes defined in
(or imported by) that module come back in :attr:`Model.classes`, and reading a weights
file or a run made from it needs them passed in (see :mod:`labkit.layers.registry`).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from labkit.errors import LabkitError, one_line, user_frame
from labkit.layers.base import Layer
from labkit.layers.registry import BUILTIN_LAYERS, UnknownLayerClass
from labkit.models import MODELS
from labkit.network import Network, read_weights
from labkit.options import MODEL_HELP


@dataclass
class Model:
    """What a ``--model`` text gave: a network (or, where allowed, one layer), the text,
    and the user's layer classes that files made from it need to be read back."""

    spec: str
    network: Network | None = None
    layer: Any = None  # a labkit Layer, or a tutorial-style one
    classes: tuple[type, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """A short name for default folder names: ``lenet``, ``leaky_net`` (the file or
        module the code came from), ``my_arch`` (a JSON file's stem)."""
        if self.spec in MODELS:
            return self.spec
        source = self.spec.rpartition(":")[0] or self.spec
        if source.endswith((".py", ".json")) or "/" in source:
            return Path(source).stem
        return source.rpartition(".")[2]


def load_model(spec: str, seed: int = 0, *, allow_layer: bool = False) -> Model:
    """The network (or layer, with ``allow_layer``) a ``--model`` text names; LabkitError
    in one line for anything else (a missing file, the user's code failing to import, a
    NAME that is missing or gives neither, a bad JSON architecture)."""
    if not isinstance(spec, str) or not spec.strip():
        raise LabkitError(f"--model: expected {MODEL_HELP}")
    if spec in MODELS:
        return Model(spec, network=MODELS[spec](seed=seed))
    if spec.endswith(".json"):
        return Model(spec, network=_from_json(Path(spec), seed))
    source, colon, name = spec.rpartition(":")
    if not colon or not source or not name:
        known = ", ".join(sorted(MODELS))
        raise LabkitError(
            f"--model {spec!r}: not a preset ({known}), a .json file, or FILE.py:NAME / "
            "package.module:NAME"
        )
    module = _import(source)
    if not hasattr(module, name):
        raise LabkitError(f"--model {spec!r}: {source} defines no {name!r}")
    made = _make(getattr(module, name), seed, spec)
    classes = layer_classes(module)
    if isinstance(made, Network):
        own = (type(layer) for layer in made.layers if type(layer) not in BUILTIN_LAYERS)
        classes = tuple(dict.fromkeys([*classes, *own]))
        return Model(spec, network=made, classes=classes)
    if allow_layer and _is_layer(made):
        own = () if type(made) in BUILTIN_LAYERS else (type(made),)
        return Model(spec, layer=made, classes=tuple(dict.fromkeys([*classes, *own])))
    wanted = "a Network or a Layer" if allow_layer else "a Network"
    raise LabkitError(f"--model {spec!r}: {name} gives {type(made).__name__}, not {wanted}")


def _is_layer(value: Any) -> bool:
    """A layer instance: labkit's contract, or a tutorial-style object with forward and
    backward methods (which the checker takes on one sample)."""
    if isinstance(value, Layer):
        return True
    kind = type(value)
    return (
        not isinstance(value, type)
        and callable(getattr(kind, "forward", None))
        and callable(getattr(kind, "backward", None))
    )


def layer_classes(module: ModuleType) -> tuple[type, ...]:
    """The Layer subclasses a module defines or imports, other than labkit's own."""
    return tuple(
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Layer)
        and value is not Layer
        and value not in BUILTIN_LAYERS
    )


def _from_json(path: Path, seed: int) -> Network:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabkitError(f"--model {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabkitError(f"--model {path}: cannot read it ({one_line(exc)})") from None
    except json.JSONDecodeError as exc:
        raise LabkitError(f"--model {path}: not valid JSON ({one_line(exc)})") from None
    try:
        return Network.from_architecture(spec, seed=seed)
    except LabkitError as exc:
        raise LabkitError(f"--model {path}: {exc}") from None


def _import(source: str) -> ModuleType:
    """The module a ``FILE.py`` path or a dotted module name points at."""
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source)
        if not path.is_file():
            raise LabkitError(f"--model {source}: no such file")
        name = path.stem if path.stem.isidentifier() else "user_model"
        loaded = sys.modules.get(name)
        if loaded is not None and getattr(loaded, "__file__", None) != str(path.resolve()):
            name = f"labkit_user_{name}"  # never shadow an imported module (a file json.py)
        spec = importlib.util.spec_from_file_location(name, path.resolve())
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # so the module's classes pickle/copy by their name
        try:
            _run_user_code(lambda: spec.loader.exec_module(module), source)
        except BaseException:
            del sys.modules[name]  # never leave a half-run module behind
            raise
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if exc.name == source or source.startswith(f"{exc.name}."):  # the module itself
            raise LabkitError(f"--model {source}: no module named {exc.name!r}") from None
        raise LabkitError(f"--model {source}: {user_frame(exc)}") from None
    except Exception as exc:  # the user's module failed while importing
        raise LabkitError(f"--model {source}: {user_frame(exc)}") from None


def _make(target: Any, seed: int, spec: str) -> Any:
    """``target`` itself, or what calling it gives (with ``seed=`` when it takes one)."""
    if isinstance(target, Network) or _is_layer(target) or not callable(target):
        return target
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_seed = "seed" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
    return _run_user_code(lambda: target(seed=seed) if takes_seed else target(), spec)


def _run_user_code(job, where: str) -> Any:
    """Run the user's code; an exception in it becomes one line with the user's own
    file:line and error (no labkit traceback)."""
    try:
        return job()
    except LabkitError:
        raise
    except (Exception, SystemExit) as exc:
        raise LabkitError(f"--model {where}: {user_frame(exc)}") from None


def with_layers(model: Model | None, layers: Iterable[type]) -> Model | None:
    """``model`` with more layer classes (handed in from Python), or a code-only Model."""
    layers = tuple(layers)
    if not layers:
        return model
    if model is None:
        return Model("python", classes=layers)
    return replace(model, classes=tuple(dict.fromkeys([*model.classes, *layers])))


def load_network(
    path: str | os.PathLike, model: Model | None = None, layers: Iterable[type] = ()
) -> Network:
    """A weights file read back with the user's ``--model`` or layer classes (needed for
    their own layers; see :func:`network_for`)."""
    model = with_layers(model, layers)
    saved = read_weights(path)
    network = network_for(saved.architecture, model, str(path), saved.model)
    from_code = model is not None and model.network is not None
    network.set_weights(saved.arrays, source=path, keep_dtype=from_code)
    return network


def network_for(
    architecture: list | None,
    model: Model | None,
    source: str,
    made_with: str | None = None,
) -> Network:
    """A fresh network to load a saved one's weights into.

    With a ``model`` (the ``--model`` the user passed), its network, after checking that
    it is the saved architecture; otherwise one built from ``architecture``, where a user's
    layer class needs ``model``: the one-line error names the class, and the ``--model``
    the weights were ``made_with`` when that is known.
    """
    if model is not None and model.network is not None:
        if architecture is not None:
            problem = architecture_difference(
                model.network.architecture(partial=True), architecture
            )
            if problem:
                raise LabkitError(f"--model {model.spec} is not the network of {source}: {problem}")
        return copy.deepcopy(model.network)  # callers load weights into it
    if architecture is None:
        raise LabkitError(f"{source}: no architecture saved; pass the --model that made it")
    try:
        return Network.from_architecture(architecture, model.classes if model else ())
    except UnknownLayerClass as exc:
        if made_with and exc.name:  # say exactly which --model to pass
            cls = exc.name.rpartition(":")[2]
            raise LabkitError(
                f"{source}: layer class {exc.name!r} is not one of labkit's; it was made with "
                f"--model {made_with}: pass that (or layers=[{cls}] in Python)"
            ) from None
        raise LabkitError(f"{source}: {exc}") from None
    except LabkitError as exc:
        raise LabkitError(f"{source}: {exc}") from None


def architecture_difference(ours: list, saved: list) -> str | None:
    """How two :meth:`Network.architecture` descriptions differ, in a few words, or None.

    Classes compare by qualname (a notebook's ``__main__:X`` is the file's ``mod:X``);
    a config that one side could not describe (None) is not compared.
    """
    if not isinstance(saved, list) or len(ours) != len(saved):
        count = len(saved) if isinstance(saved, list) else "?"
        return f"{len(ours)} layers here, {count} saved"
    for index, (mine, theirs) in enumerate(zip(ours, saved, strict=True)):
        if not isinstance(theirs, dict):
            return f"layer {index} is unreadable in the saved architecture"
        name, saved_name = str(mine["class"]), str(theirs.get("class"))
        if name.rpartition(":")[2] != saved_name.rpartition(":")[2]:
            return f"layer {index} is {name} here, {saved_name} saved"
        config, saved_config = mine.get("config"), theirs.get("config")
        if config is not None and saved_config is not None:
            if json.loads(json.dumps(config)) != saved_config:
                return f"layer {index} ({name}) has config {config} here, {saved_config} saved"
    return None
