"""Throughput of labkit's ``lenet`` against the same network in TensorFlow/Keras and
PyTorch (CPU eager, where torch is installed).

One process, float32, the same number of threads for every framework, steady state
after warm-up, the contenders' blocks alternated. Measures:

1. training images/s: labkit (forward, softmax cross-entropy derivative, backward, Adam)
   against Keras ``train_on_batch`` (the per-step comparison), Keras ``fit`` and a
   PyTorch eager step (forward, cross-entropy, backward, Adam);
2. inference images/s: ``Network.predict`` against Keras ``predict``, direct Keras
   calls and PyTorch under ``inference_mode``;
3. labkit against the tutorial's per-sample layers (``labkit.reference``), per step;
4. a float32 GEMM as the machine's roofline, and lenet's training GFLOP/s against it;
5. the GEMMs' share of a serial step on one thread (``gemm_share.py``).

Run from the repository root (``PYTHONPATH=.`` unless labkit is installed)::

    python benchmarks/bench_engine.py [--steps N] [--warmup N] [--json OUT] [--quick]

TensorFlow and torch are imported here only; ``import labkit`` never imports them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

try:
    from labkit import reference
    from labkit.data import load_mnist, one_hot
    from labkit.models import lenet
    from labkit.network import Network
    from labkit.optim import Adam
    from labkit.train import Trainer
except ModuleNotFoundError as exc:  # pragma: no cover - a usage error, not a bug
    sys.exit(f"bench_engine: {exc}; run from the repository root with PYTHONPATH=. ")
import torch_lenet  # noqa: E402 - beside this script; works without torch installed
from bench_data import DATA_HELP, data_source  # noqa: E402 - beside this script
from gemm_share import gemm_share  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCHES = (32, 128)
REFERENCE_BATCH = 32
POOL_BATCHES = 8  # distinct batches cycled through while training, per batch size

Batch = tuple[np.ndarray, np.ndarray]  # (images, one-hot targets)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    """How much to measure; ``--quick`` shrinks everything for a ~1 minute smoke run."""

    steps: int = 50  # training steps per timed repeat
    warmup: int = 10  # untimed steps before timing (tracing, caches, allocator)
    repeats: int = 5  # timed repeats; the median is reported
    threads: int = 2  # TF intra-op threads and OpenBLAS threads
    inference_images: int = 4096
    reference_steps: int = 3  # timed steps of the (slow) reference, after one warm-up
    gemm_size: int = 2048
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> Config:
        base = dict(steps=8, warmup=3, repeats=3, inference_images=1024, reference_steps=1)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def parse_args(argv: list[str] | None = None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="training steps per timed repeat (50)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up steps (10)")
    parser.add_argument("--repeats", type=int, help="timed repeats, median reported (5)")
    parser.add_argument("--threads", type=int, help="threads for both frameworks (2)")
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    parser.add_argument(
        "--no-torch", action="store_true", help="leave PyTorch out even where it is installed"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write results as JSON")
    parser.add_argument("--data", help=DATA_HELP)
    args = parser.parse_args(argv)
    overrides = {
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "threads": args.threads,
    }
    if args.quick:
        config = Config.quick(**overrides)
    else:
        config = Config(**{k: v for k, v in overrides.items() if v is not None})
    if min(config.steps, config.repeats, config.threads) < 1 or config.warmup < 0:
        parser.error("--steps, --repeats and --threads must be >= 1, --warmup >= 0")
    return config, args


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Seconds of each timed repeat of a block that processes ``images`` images."""

    images: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def images_per_second(self) -> float:
        return self.images / self.median

    @property
    def spread(self) -> float:
        """max/min of the repeats: 1.0 is a quiet machine."""
        return max(self.seconds) / min(self.seconds)


def time_interleaved(blocks: dict[str, Callable[[], object]], repeats: int) -> dict[str, list]:
    """Time each block ``repeats`` times, alternating between blocks (A B A B ...).

    Alternating spreads background noise over every contender instead of one of them.
    """
    seconds: dict[str, list[float]] = {name: [] for name in blocks}
    for _ in range(repeats):
        for name, block in blocks.items():
            start = time.perf_counter()
            block()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def log(message: str) -> None:
    print(message, flush=True)


def describe(name: str, timing: Timing) -> str:
    return (
        f"  {name:<34} {timing.images_per_second:>10,.0f} img/s  "
        f"(median of {len(timing.seconds)}, spread x{timing.spread:.2f})"
    )


# --------------------------------------------------------------------------- setup


@contextmanager
def captured_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; replay it only if the block raises.

    TensorFlow 2.21 logs "oneDNN custom operations are on" through absl before its log
    level applies, so TF_CPP_MIN_LOG_LEVEL=3 alone does not silence the import.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def setup_tensorflow(threads: int) -> tuple[Any, Any]:
    """Import TensorFlow quietly and pin its thread pools before any op runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with captured_stderr():
        import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.get_logger().setLevel("ERROR")
    import keras

    return tf, keras


def load_images(source: str, count: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``count`` MNIST training images (N, 1, 28, 28) float32 and one-hot float32 targets.

    The sample has fewer images than some runs need; it is tiled (throughput does not care).
    """
    mnist = load_mnist(source)
    reps = -(-count // len(mnist.x_train))
    x = np.concatenate([mnist.x_train] * reps)[:count]
    y = one_hot(np.concatenate([mnist.y_train] * reps)[:count]).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), y, mnist.source


def channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> contiguous (N, H, W, C), Keras's layout."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def machine_facts(tf: Any, keras: Any, torch: str | None, config: Config) -> dict[str, Any]:
    """CPU, library versions and the thread counts actually in force."""
    blas = [
        f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}), "
        f"{i['num_threads']} threads"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": torch,  # its version where it is compared
        "blas": "; ".join(blas) or "none found by threadpoolctl",
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "threads_requested": config.threads,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- the Keras twin


def build_keras_lenet(keras: Any) -> Any:
    """labkit's lenet in Keras: channels-last (28, 28, 1) input, logits out, Adam 1e-3."""
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    return model


def keras_weights(network: Network) -> list[np.ndarray]:
    """labkit lenet parameters in Keras's order and layouts.

    Conv kernels (D, C, k, k) -> (k, k, C, D). Dense weights (out, in) -> (in, out).
    labkit flattens (C, H, W) and Keras (H, W, C), so the first Dense's input rows are
    permuted: Keras row (h, w, c) takes labkit column (c, h, w).
    """
    conv1, conv2, dense1, dense2 = (layer for layer in network if layer.params)
    channels, height, width = network.layers[6].input_shape  # the Reshape: (32, 4, 4)
    w1 = dense1.params["weights"].reshape(-1, channels, height, width)
    return [
        conv1.params["kernels"].transpose(2, 3, 1, 0),
        conv1.params["biases"],
        conv2.params["kernels"].transpose(2, 3, 1, 0),
        conv2.params["biases"],
        w1.transpose(2, 3, 1, 0).reshape(channels * height * width, -1),
        dense1.params["bias"],
        dense2.params["weights"].T,
        dense2.params["bias"],
    ]


def check_same_logits(network: Network, model: Any, x: np.ndarray) -> float:
    """Largest |labkit - Keras| logit on ``x``; exits when they disagree beyond 1e-4."""
    ours = network.forward(x)
    theirs = np.asarray(model(channels_last(x), training=False))
    diff = max_abs_diff(ours, theirs)
    ok = np.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    log(
        f"logits check labkit vs Keras on {len(x)} images: max |diff| = {diff:.2e} "
        f"-> {'OK' if ok else 'MISMATCH'} (allclose rtol=atol=1e-4)"
    )
    if not ok:
        sys.exit("bench_engine: the Keras twin does not compute labkit's function; aborting")
    return diff


# --------------------------------------------------------------------------- training


def labkit_steps(trainer: Trainer, batches: Iterator[Batch]) -> Callable:
    """A function running ``n`` labkit training steps on the next batches.

    ``Trainer.train_step`` is what ``labkit train`` runs: forward, softmax cross-entropy
    (value and derivative), backward, Adam; the batch split over the benchmark's threads.
    """

    def run(n: int) -> None:
        for _ in range(n):
            x, y = next(batches)
            trainer.train_step(x, y)

    return run


def keras_steps(model: Any, batches: Iterator[Batch]) -> Callable:
    """A function running ``n`` ``train_on_batch`` steps (each returns the loss: synchronous)."""

    def run(n: int) -> None:
        for _ in range(n):
            x, y = next(batches)
            model.train_on_batch(x, y)

    return run


def make_pools(x: np.ndarray, y: np.ndarray, batch: int) -> tuple[list[Batch], list[Batch]]:
    """The same POOL_BATCHES batches, channels-first for labkit and channels-last for Keras."""
    ours, theirs = [], []
    for i in range(POOL_BATCHES):
        xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        ours.append((np.ascontiguousarray(xb), yb))
        theirs.append((channels_last(xb), yb))
    return ours, theirs


def bench_training(
    network: Network,
    optimizer: Adam,
    model: Any,
    twin: tuple[Any, Any] | None,
    x: np.ndarray,
    y: np.ndarray,
    batch: int,
    config: Config,
) -> dict[str, Timing]:
    """labkit steps vs ``train_on_batch`` and the PyTorch twin's steps (``twin``: model
    and optimizer, or None), interleaved; then Keras ``fit`` on an in-memory array."""
    ours, theirs = make_pools(x, y, batch)
    trainer = Trainer(network, optimizer, batch_size=batch, progress=False, threads=config.threads)
    runs = {
        "labkit": labkit_steps(trainer, cycle(ours)),
        "keras": keras_steps(model, cycle(theirs)),
    }
    if twin is not None:
        runs["torch"] = torch_lenet.steps(*twin, cycle(ours))
    for run in runs.values():
        run(config.warmup)
    seconds = time_interleaved(
        {name: (lambda run=run: run(config.steps)) for name, run in runs.items()},
        config.repeats,
    )
    images = config.steps * batch
    timings = {name: Timing(images, s) for name, s in seconds.items()}

    fit_x = channels_last(x[:images])
    fit_y = y[:images]

    def fit() -> None:
        model.fit(fit_x, fit_y, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    fit()  # warm-up: builds the data adapter path and traces for this batch size
    timings["keras_fit"] = Timing(images, time_interleaved({"fit": fit}, config.repeats)["fit"])
    return timings


# --------------------------------------------------------------------------- inference


def bench_inference(
    network: Network, model: Any, twin: Any, x: np.ndarray, batch: int, config: Config
) -> dict[str, Timing]:
    """``Network.predict`` vs Keras ``predict``, ``model(x, training=False)`` per batch and
    the PyTorch twin (``twin``, or None) under ``inference_mode``."""
    x_last = channels_last(x)

    def ours() -> np.ndarray:
        return network.predict(x, batch_size=batch)

    def keras_predict() -> np.ndarray:
        return model.predict(x_last, batch_size=batch, verbose=0)

    def keras_call() -> np.ndarray:
        outs = [
            np.asarray(model(x_last[i : i + batch], training=False))
            for i in range(0, len(x_last), batch)
        ]
        return np.concatenate(outs)

    blocks = {"labkit": ours, "keras_predict": keras_predict, "keras_call": keras_call}
    if twin is not None:
        blocks["torch"] = torch_lenet.predictor(twin, x, batch)
    for block in blocks.values():  # warm-up: tracing, first allocations
        block()
    seconds = time_interleaved(blocks, config.repeats)
    return {name: Timing(len(x), s) for name, s in seconds.items()}


# --------------------------------------------------------------------------- the tutorial's layers


def reference_lenet(network: Network) -> list:
    """lenet from ``labkit.reference`` layers (float64, per sample), with ``network``'s weights."""
    layers = [
        reference.Convolutional((1, 28, 28), 5, 16, bias="tied"),
        reference.ReLU(),
        reference.MaxPool(2),
        reference.Convolutional((16, 12, 12), 5, 32, bias="tied"),
        reference.ReLU(),
        reference.MaxPool(2),
        reference.Reshape((32, 4, 4), (512, 1)),
        reference.Dense(512, 128),
        reference.ReLU(),
        reference.Dense(128, 10),
    ]
    for ours, theirs in zip(network.layers, layers, strict=True):
        for name, value in ours.params.items():
            shape = theirs.params[name].shape  # Dense bias is a column (out, 1) there
            theirs.params[name] = value.astype(np.float64).reshape(shape)
    return layers


def column_softmax_cross_entropy_prime(y_true: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``softmax(z) - y`` for one (n, 1) column; ``reference.train_step`` does the 1/N."""
    e = np.exp(logits - logits.max())
    return e / e.sum() - y_true


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


def reference_forward(layers: list, sample: np.ndarray) -> np.ndarray:
    out = sample
    for layer in layers:
        out = layer.forward(out)
    return out


def bench_reference(network: Network, x: np.ndarray, y: np.ndarray, config: Config) -> dict:
    """Seconds per training step of the reference lenet at batch 32 (SGD, per-sample loop)."""
    layers = reference_lenet(network)
    sample = x[:1]
    ours = network.forward(sample).ravel()
    diff = max_abs_diff(reference_forward(layers, sample[0].astype(np.float64)).ravel(), ours)
    log(f"logits check labkit vs reference on 1 image: max |diff| = {diff:.2e}")
    xb = x[:REFERENCE_BATCH].astype(np.float64)
    yb = y[:REFERENCE_BATCH, :, None].astype(np.float64)

    def step() -> None:
        reference.train_step(layers, xb, yb, column_softmax_cross_entropy_prime, 1e-3)

    step()  # warm-up
    seconds = time_interleaved({"reference": step}, config.reference_steps)["reference"]
    return {
        "batch": REFERENCE_BATCH,
        "seconds": seconds,
        "median": statistics.median(seconds),
        "logits_max_abs_diff": diff,
    }


# --------------------------------------------------------------------------- GEMM and FLOPs


def bench_gemm(config: Config) -> dict:
    """float32 ``a @ b`` of two n x n matrices: 2 n^3 FLOP, median GFLOP/s."""
    n = config.gemm_size
    rng = np.random.default_rng(config.seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up
    seconds = time_interleaved({"gemm": lambda: np.matmul(a, b, out=out)}, config.repeats)["gemm"]
    median = statistics.median(seconds)
    return {"n": n, "seconds": seconds, "gflops": 2 * n**3 / median / 1e9}


def lenet_macs_per_image(network: Network) -> dict[str, int]:
    """Forward multiply-adds per image of each conv (out positions x C k k) and dense layer."""
    macs = {}
    for layer in network:
        if hasattr(layer, "kernel_size"):
            depth, oh, ow = layer.out_shape
            c = layer.input_shape[0]
            macs[layer.name] = depth * oh * ow * c * layer.kernel_size**2
        elif hasattr(layer, "input_size"):
            macs[layer.name] = layer.input_size * layer.output_size
    return macs


def train_flop_per_image(network: Network) -> float:
    """2 FLOP per multiply-add, x3 for forward + weight gradient + input gradient."""
    return 2 * 3 * sum(lenet_macs_per_image(network).values())


# --------------------------------------------------------------------------- report


Row = tuple[str, int, Timing, Timing]  # what (the peer), batch, labkit, the peer


def markdown_table(rows: list[Row]) -> str:
    """The comparison table; spread is max/min over the timed repeats (1.00 = no noise)."""
    lines = [
        "| what (peer) | batch | labkit img/s | peer img/s | ratio (labkit/peer) "
        "| spread labkit, peer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for what, batch, ours, theirs in rows:
        a, b = ours.images_per_second, theirs.images_per_second
        lines.append(
            f"| {what} | {batch} | {a:,.0f} | {b:,.0f} | {a / b:.2f} "
            f"| x{ours.spread:.2f}, x{theirs.spread:.2f} |"
        )
    return "\n".join(lines)


def comparison_rows(results: dict[str, Any]) -> list[Row]:
    """Training rows (train_on_batch, fit) then inference rows (predict, direct call)."""
    rows: list[Row] = []
    for batch in BATCHES:
        t = results["training"][batch]
        rows.append(("train step (Keras train_on_batch)", batch, t["labkit"], t["keras"]))
        if "torch" in t:
            rows.append(("train step (PyTorch eager)", batch, t["labkit"], t["torch"]))
        rows.append(("train (Keras fit, in-memory array)", batch, t["labkit"], t["keras_fit"]))
    for batch in BATCHES:
        t = results["inference"][batch]
        rows.append(("inference (Keras predict)", batch, t["labkit"], t["keras_predict"]))
        rows.append(("inference (Keras model(x) per batch)", batch, t["labkit"], t["keras_call"]))
        if "torch" in t:
            rows.append(("inference (PyTorch, inference_mode)", batch, t["labkit"], t["torch"]))
    return rows


def report(results: dict[str, Any], network: Network) -> str:
    """The Markdown table, the reference and GEMM lines and the machine facts."""
    ref = results["reference"]
    labkit_step = results["training"][REFERENCE_BATCH]["labkit"].median / results["steps"]
    gemm = results["gemm"]
    flop = train_flop_per_image(network)
    lines = [markdown_table(comparison_rows(results)), ""]
    lines.append(
        f"- reference (labkit.reference, float64, per-sample loop, SGD) at batch {ref['batch']}: "
        f"{ref['median']:.3f} s/step vs labkit {labkit_step * 1e3:.2f} ms/step "
        f"-> ratio {ref['median'] / labkit_step:,.1f}x (reference s/step / labkit s/step)"
    )
    lines.append(
        f"- GEMM float32 {gemm['n']}x{gemm['n']} @ {gemm['n']}x{gemm['n']}: "
        f"{gemm['gflops']:.1f} GFLOP/s"
    )
    macs = sum(lenet_macs_per_image(network).values())
    lines.append(
        f"- lenet training FLOP/image: {flop / 1e6:.2f} M = 2 x 3 x {macs:,} forward "
        "multiply-adds (convs + dense; pooling, ReLU, bias, loss, Adam not counted)"
    )
    for batch in BATCHES:
        t = results["training"][batch]
        parts = []
        labels = (("labkit", "labkit"), ("keras", "Keras train_on_batch"), ("torch", "PyTorch"))
        for name, label in labels:
            if name not in t:
                continue
            gflops = flop * t[name].images_per_second / 1e9
            parts.append(f"{label} {gflops:.2f} GFLOP/s = {gflops / gemm['gflops']:.0%} of GEMM")
        lines.append(f"- lenet training at batch {batch}: " + "; ".join(parts))
    for share in results["gemm_share"]:
        lines.append(
            f"- GEMMs' share of a serial step on one thread at batch {share['batch']}: "
            f"{share['gemm_ms']:.2f} of {share['step_ms']:.2f} ms = {share['share']:.0%} "
            "(the step's GEMMs replayed alone; the rest is elementwise work and Python)"
        )
    m = results["machine"]
    lines.append(
        f"- machine: {m['cpu_count']} CPUs ({m['cpus_usable']} usable), {m['cpu_model']}; "
        f"Python {m['python']}, NumPy {m['numpy']}, TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}, PyTorch {m['torch'] or 'not compared'}; BLAS: {m['blas']}; "
        f"TF intra-op {m['tf_intra_op_threads']}, "
        f"inter-op {m['tf_inter_op_threads']}; load average "
        f"{results['load_before'][0]:.2f} before, {results['load_after'][0]:.2f} after "
        f"(1-minute); Keras jit_compile={results['keras_jit_compile']}; data: {results['data']}"
    )
    if results["load_before"][0] >= 1.0:
        lines.append(
            f"- WARNING: load average {results['load_before'][0]:.2f} when the run started: "
            "other processes competed for the CPUs. Both frameworks wait for a descheduled "
            "thread (a split labkit step, a TensorFlow op); compare with --threads 1."
        )
    return "\n".join(lines)


def to_json(value: Any) -> Any:
    """Timings and nested dicts as plain JSON data (keys as strings)."""
    if isinstance(value, Timing):
        return {
            **asdict(value),
            "median": value.median,
            "images_per_second": value.images_per_second,
            "spread": value.spread,
        }
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    config, args = parse_args(argv)
    tf, keras = setup_tensorflow(config.threads)  # before any TF op
    args.torch = None if args.no_torch else torch_lenet.available()  # its version, or None
    if args.torch:
        torch_lenet.setup(config.threads)  # before any torch op
    elif not args.no_torch:
        log("PyTorch is not installed: its rows are left out (pip install torch==2.13.0)")
    load_before = os.getloadavg()
    with threadpool_limits(limits=config.threads, user_api="blas"):
        results = run_all(config, args, tf, keras)
    results["load_before"], results["load_after"] = load_before, os.getloadavg()
    results["config"] = asdict(config)
    results["total_seconds"] = time.perf_counter() - started
    network = lenet(seed=config.seed)  # for the FLOP count only (shapes)
    print()
    print(report(results, network))
    print(f"\ntotal runtime: {results['total_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(to_json(results), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def run_all(config: Config, args: argparse.Namespace, tf: Any, keras: Any) -> dict[str, Any]:
    """Every measurement, in order; returns the raw results."""
    machine = machine_facts(tf, keras, args.torch, config)
    results: dict[str, Any] = {"machine": machine, "steps": config.steps}
    need = max(max(BATCHES) * max(POOL_BATCHES, config.steps), config.inference_images)
    x, y, source = load_images(data_source(args.data), need)
    results["data"] = source
    log(f"data: {source}; {config}")

    keras.utils.set_random_seed(config.seed)
    network = lenet(seed=config.seed)
    model = build_keras_lenet(keras)
    model.set_weights(keras_weights(network))
    results["logits_max_abs_diff"] = check_same_logits(network, model, x[:32])
    results["keras_jit_compile"] = bool(getattr(model, "jit_compile", False))
    twin = None
    if args.torch:
        twin = torch_lenet.build(network)
        diff = max_abs_diff(torch_lenet.logits(twin[0], x[:32]), network.forward(x[:32]))
        log(f"logits check labkit vs PyTorch on 32 images: max |diff| = {diff:.2e}")
        if diff > 1e-4:
            sys.exit("bench_engine: the PyTorch twin does not compute labkit's function")
    results["reference"] = bench_reference(network, x, y, config)  # before training moves weights

    optimizer = Adam(network, lr=1e-3)
    results["training"], results["inference"] = {}, {}
    for batch in BATCHES:
        log(f"training, batch {batch}:")
        timings = bench_training(network, optimizer, model, twin, x, y, batch, config)
        for name, timing in timings.items():
            log(describe(name, timing))
        results["training"][batch] = timings
    for batch in BATCHES:
        log(f"inference on {config.inference_images} images, batch {batch}:")
        timings = bench_inference(
            network, model, twin and twin[0], x[: config.inference_images], batch, config
        )
        for name, timing in timings.items():
            log(describe(name, timing))
        results["inference"][batch] = timings
    results["gemm"] = bench_gemm(config)
    results["gemm_share"] = [
        gemm_share(lenet(seed=config.seed), x[:batch], y[:batch], config.repeats)
        for batch in BATCHES
    ]
    return results


if __name__ == "__main__":
    sys.exit(main())
