"""TensorFlow as an independent oracle: each layer (and loss) against the same op in TF.

:func:`check_layer_against_tensorflow` runs a layer's forward and backward on a float64
copy and the matching TensorFlow op under ``tf.GradientTape`` on the very same float64
values. The output is scalarized as in :mod:`labkit.gradcheck`, ``L = sum(R * y)`` with
``R = default_rng(seed).standard_normal(y.shape)``, so ``backward(R)`` is compared with
TF's dL/dx and dL/dparam. An element passes when
``|labkit - tf| <= atol + rtol * |tf|``; reports name the tensors ``"output"``,
``"input"`` and each parameter, with ``mode="tensorflow"``, ``analytic`` the labkit value
and ``numeric`` the TensorFlow value at the worst element.

TensorFlow is imported only when a check runs, so ``import labkit.oracle`` stays light.
Max pooling routes ties differently in TF; inputs without ties are the contract.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from labkit.gradcheck import (
    OVERWROTE,
    GradcheckError,
    backward_pass,
    float64_copy,
    layer_name,
    require_backward,
    valid_gradient,
    validated_tolerance,
)
from labkit.layers import (
    Convolutional,
    Dense,
    Flatten,
    MaxPool,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)
from labkit.losses import LOSSES
from labkit.reports import FlatPositions, LayerReport, TensorCheck, Tolerance, summarize

MODE = "tensorflow"
MISSING = "the TensorFlow oracle needs tensorflow: pip install 'labkit[tensorflow]'"


def _tensorflow():
    """Import TensorFlow quietly, or raise a one-line GradcheckError when it is missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN's start-up notice bypasses the log level; float64 ops don't use it anyway.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import tensorflow as tf
    except ImportError:
        raise GradcheckError(MISSING) from None
    return tf


# -- one TensorFlow op per layer type: (tf, layer, x, params) -> y, in labkit's layout ---


def _conv(tf, layer, x, params):
    """Valid cross-correlation, stride 1, NHWC, plus the untied or tied bias."""
    kernels = tf.transpose(params["kernels"], (2, 3, 1, 0))  # (D, C, k, k) -> (k, k, C, D)
    y = tf.nn.conv2d(tf.transpose(x, (0, 2, 3, 1)), kernels, strides=1, padding="VALID")
    biases = params["biases"]
    y += tf.transpose(biases, (1, 2, 0)) if layer.bias_mode == "untied" else biases
    return tf.transpose(y, (0, 3, 1, 2))


def _dense(tf, layer, x, params):
    """``x W^T + b`` on rows; a ``(N, in, 1)`` column input gives a ``(N, out, 1)`` output."""
    rows = tf.reshape(x, (x.shape[0], layer.input_size))
    y = tf.matmul(rows, params["weights"], transpose_b=True) + params["bias"]
    return y[:, :, None] if len(x.shape) == 3 else y


def _max_pool(tf, layer, x, params):
    """VALID max pooling with the layer's pool size and stride (NHWC in TF)."""
    nhwc = tf.transpose(x, (0, 2, 3, 1))
    y = tf.nn.max_pool2d(nhwc, ksize=layer.pool_size, strides=layer.stride, padding="VALID")
    return tf.transpose(y, (0, 3, 1, 2))


def _reshape(tf, layer, x, params):
    """Each sample to the layer's output shape."""
    return tf.reshape(x, (x.shape[0], *layer.out_shape))


def _flatten(tf, layer, x, params):
    """Each sample to a vector."""
    return tf.reshape(x, (x.shape[0], -1))


def _softmax(tf, layer, x, params):
    """Softmax over each flattened sample, back in the input's shape."""
    return tf.reshape(tf.nn.softmax(tf.reshape(x, (x.shape[0], -1)), axis=-1), x.shape)


def _elementwise(name: str) -> Callable:
    """An op builder applying ``tf.<name>`` elementwise (dotted names allowed)."""

    def build(tf, layer, x, params):
        op = tf
        for part in name.split("."):
            op = getattr(op, part)
        return op(x)

    build.__doc__ = f"Elementwise tf.{name}."
    return build


OPS: dict[type, Callable] = {
    Convolutional: _conv,
    Dense: _dense,
    MaxPool: _max_pool,
    Reshape: _reshape,
    Flatten: _flatten,
    Sigmoid: _elementwise("sigmoid"),
    Tanh: _elementwise("tanh"),
    ReLU: _elementwise("nn.relu"),
    Softmax: _softmax,
}


def op_for(layer) -> Callable:
    """The op builder of the nearest class in ``layer``'s MRO (so subclasses and mutants
    are compared with what they claim to be); generic ``Activation`` has none."""
    for cls in type(layer).__mro__:
        if cls in OPS:
            return OPS[cls]
    kind = type(layer).__name__
    raise GradcheckError(f"{layer_name(layer)}: no TensorFlow counterpart for {kind}")


# -- comparison ----------------------------------------------------------------------


def _compare(check: TensorCheck, ours, theirs: np.ndarray, tolerance: Tolerance) -> TensorCheck:
    """Fill ``check`` from labkit's ``ours`` against TensorFlow's ``theirs``, element-wise."""
    ours = np.asarray(ours, dtype=np.float64)
    if ours.shape != theirs.shape:
        check.note = f"labkit gives shape {ours.shape}, TensorFlow {theirs.shape}"
        return check
    return summarize(
        check,
        ours.reshape(-1),
        theirs.reshape(-1),
        np.zeros(ours.size, dtype=bool),
        FlatPositions(ours.shape),
        tolerance.allowed(theirs.reshape(-1)),
    )


def _compare_gradient(check: TensorCheck, value, grad, theirs, tolerance: Tolerance) -> TensorCheck:
    """Like :func:`_compare`, after gradcheck's notes for a missing or malformed gradient."""
    if theirs is None:
        check.note = "not compared: labkit and TensorFlow outputs differ in shape"
        return check
    if not valid_gradient(check, value, grad):
        return check
    return _compare(check, grad, theirs, tolerance)


# -- layers ----------------------------------------------------------------------------


def check_layer_against_tensorflow(
    layer, x: np.ndarray, *, seed: int = 0, rtol: float = 1e-7, atol: float = 1e-9
) -> LayerReport:
    """Compare ``layer``'s output, input gradient and parameter gradients with TensorFlow."""
    name = layer_name(layer)
    tolerance = validated_tolerance(rtol, atol)
    op = op_for(layer)
    require_backward(layer)
    tf = _tensorflow()
    work = float64_copy(layer)
    x = np.array(x, dtype=np.float64, order="C")
    if x.ndim < 1 or len(x) == 0:
        raise GradcheckError(f"{name}: x must be a non-empty batch (N, ...), got shape {x.shape}")

    rng = np.random.default_rng(seed)
    output, projection, grad_x, grads, overwrote = backward_pass(work, name, x, rng)
    params = {key: np.array(value) for key, value in (getattr(work, "params", None) or {}).items()}
    tf_output, tf_grad_x, tf_grads = _tensorflow_pass(tf, op, work, x, params, projection)

    report = LayerReport(name)
    report.checks.append(
        _compare(TensorCheck(name, "output", output.shape, MODE), output, tf_output, tolerance)
    )
    input_check = TensorCheck(name, "input", tuple(x.shape), MODE)
    report.checks.append(_compare_gradient(input_check, x, grad_x, tf_grad_x, tolerance))
    if overwrote:  # as in gradcheck: callers (hooks, the network) may still hold that array
        input_check.note = OVERWROTE
    for pname, value in params.items():
        check = TensorCheck(name, pname, tuple(value.shape), MODE)
        theirs = None if tf_grads is None else tf_grads[pname]
        gradient = grads.get(pname)
        report.checks.append(_compare_gradient(check, value, gradient, theirs, tolerance))
    return report


def _tensorflow_pass(tf, op: Callable, layer, x: np.ndarray, params: dict, projection):
    """TF's ``y = op(x, params)`` and, if shapes allow, the gradients of ``sum(R * y)``.

    Returns ``(y, dx, {name: dparam})``; the gradients are None when ``y`` does not have
    the shape of labkit's output (then ``R`` cannot weigh it).
    """
    tx = tf.constant(x, dtype=tf.float64)
    tparams = {key: tf.constant(value, dtype=tf.float64) for key, value in params.items()}
    with tf.GradientTape() as tape:
        tape.watch([tx, *tparams.values()])
        try:
            y = op(tf, layer, tx, tparams)
        except (ValueError, tf.errors.InvalidArgumentError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GradcheckError(
                f"{layer_name(layer)}: TensorFlow rejects the input: {message}"
            ) from None
        if tuple(y.shape) != projection.shape:
            return y.numpy(), None, None
        objective = tf.reduce_sum(tf.constant(projection, dtype=tf.float64) * y)
    dx, *dparams = tape.gradient(
        objective, [tx, *tparams.values()], unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return y.numpy(), dx.numpy(), {k: g.numpy() for k, g in zip(tparams, dparams, strict=True)}


# -- losses ----------------------------------------------------------------------------


def _tf_mse(tf, y_true, y_pred):
    """Mean squared error over every element."""
    return tf.reduce_mean(tf.square(y_true - y_pred))


def _tf_binary_cross_entropy(tf, y_true, y_pred):
    """The tutorial's BCE, ``mean(-y log p - (1 - y) log(1 - p))``, in TF ops."""
    return tf.reduce_mean(-y_true * tf.math.log(y_pred) - (1 - y_true) * tf.math.log(1 - y_pred))


def _tf_softmax_cross_entropy(tf, y_true, logits):
    """TF's fused softmax cross-entropy on each flattened sample, mean over the batch."""
    n = logits.shape[0]
    per_sample = tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.reshape(y_true, (n, -1)), logits=tf.reshape(logits, (n, -1))
    )
    return tf.reduce_mean(per_sample)


LOSS_OPS: dict[str, Callable] = {
    "mse": _tf_mse,
    "binary_cross_entropy": _tf_binary_cross_entropy,
    "softmax_cross_entropy": _tf_softmax_cross_entropy,
}


def check_loss_against_tensorflow(
    loss_name: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> LayerReport:
    """Compare a labkit loss's value (``"loss"``) and derivative (``"input"``) with TF's."""
    if loss_name not in LOSS_OPS:
        known = ", ".join(sorted(LOSS_OPS))
        raise GradcheckError(f"{loss_name}: no TensorFlow counterpart (known: {known})")
    tolerance = validated_tolerance(rtol, atol)
    tf = _tensorflow()
    loss = LOSSES[loss_name]
    y_true = np.array(y_true, dtype=np.float64)
    y_pred = np.array(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_pred.ndim < 1 or len(y_pred) == 0:
        raise GradcheckError(
            f"{loss_name}: y_true {y_true.shape} and y_pred {y_pred.shape} must be the same "
            "non-empty batch shape"
        )
    value = np.array(loss.value(y_true, y_pred), dtype=np.float64)
    prime = loss.prime(y_true, y_pred)

    t_true = tf.constant(y_true, dtype=tf.float64)
    t_pred = tf.constant(y_pred, dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(t_pred)
        t_value = LOSS_OPS[loss_name](tf, t_true, t_pred)
    t_prime = tape.gradient(t_value, t_pred)

    report = LayerReport(loss_name)
    value_check = TensorCheck(loss_name, "loss", (), MODE)
    report.checks.append(_compare(value_check, value, t_value.numpy(), tolerance))
    prime_check = TensorCheck(loss_name, "input", tuple(y_pred.shape), MODE)
    prime_check = _compare_gradient(prime_check, y_pred, prime, t_prime.numpy(), tolerance)
    report.checks.append(prime_check)
    return report
