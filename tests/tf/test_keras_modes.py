"""ODEBlock in every Keras mode: unknown batch dimensions, traced signatures, saving and loading.

Keras calls layers with an unknown leading dimension in ``fit``/``predict``/``evaluate`` whenever
the batch size does not divide the data (50 samples in batches of 32 here); before the fix the
block failed there with ``TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'``.
"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

from tests.tf.test_tf import SmallDynamics  # noqa: E402  (registered serializable)

TOL = 1e-4
"""rtol = atol of the block under test."""

SOLVE_SLACK = 2 * TOL
"""Two solves of one state at TOL differ by up to this much (each is within about TOL of the truth).

Graph and eager execution need not round the float32 dynamics alike: where TensorFlow runs oneDNN
kernels (CPUs with AVX-512 VNNI or AMX) a graph may fuse ops that eager mode runs one by one, and
the adaptive solver then takes different steps, so the answers agree to the tolerance, not bitwise.
"""

GRADIENT_SLACK = 50 * TOL
"""Relative to the largest entry, how far an adjoint gradient at TOL may be from the exact one (measured:
up to 1.4e-3 on this model)."""


def _model(tol=TOL, **options):
    tf.keras.utils.set_random_seed(1)
    return tf.keras.Sequential([
        tf.keras.Input((2,)),
        otf.ODEBlock(SmallDynamics(), rtol=tol, atol=tol, **options),
        tf.keras.layers.Dense(1),
    ])


def _sum_of_squares_slack(values):
    """How far ``sum(v**2)`` may move when every ``v`` moves by up to :data:`SOLVE_SLACK`."""
    values = np.abs(np.asarray(values))
    return 2 * float(values.sum()) * SOLVE_SLACK + values.size * SOLVE_SLACK**2


def _outputs_loss_and_gradients(model, inputs):
    with tf.GradientTape() as tape:
        outputs = model(inputs)
        loss = tf.reduce_sum(outputs**2)
    return outputs, loss, tape.gradient(loss, model.trainable_variables)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2)).astype("float32")
    return x, (x[:, :1] * x[:, 1:]).astype("float32")


def test_predict_evaluate_fit_with_a_partial_last_batch(data):
    x, y = data
    model = _model()
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    # the adaptive solver sees each batch as one state: compare batch by batch
    eager = np.concatenate([model(x[:32]).numpy(), model(x[32:]).numpy()])
    np.testing.assert_allclose(model.predict(x, batch_size=32, verbose=0), eager, rtol=0, atol=SOLVE_SLACK)
    before = model.evaluate(x, y, batch_size=32, verbose=0)
    residual = eager - y
    assert before == pytest.approx(float(np.mean(residual**2)), abs=_sum_of_squares_slack(residual) / residual.size)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    block = model.layers[0]
    assert block.nfe_forward > 0 and block.nfe_backward > 0


def test_tf_function_with_unknown_batch_signature(data):
    """The traced step with an unknown batch agrees with eager mode and with a tight reference solve."""
    x, _ = data
    model, reference = _model(), _model(tol=1e-8)

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def grads(inputs):
        return _outputs_loss_and_gradients(model, inputs)[1:]

    for size in (7, 50):
        loss, graph_grads = grads(x[:size])
        _, eager_loss, eager_grads = _outputs_loss_and_gradients(model, x[:size])
        exact_outputs, exact_loss, exact_grads = _outputs_loss_and_gradients(reference, x[:size])
        loss_slack = _sum_of_squares_slack(exact_outputs)
        assert float(loss) == pytest.approx(float(eager_loss), abs=loss_slack)
        assert float(loss) == pytest.approx(float(exact_loss), abs=loss_slack)
        for g, e, exact in zip(graph_grads, eager_grads, exact_grads):
            scale = float(np.abs(exact.numpy()).max())
            for computed in (g, e):
                np.testing.assert_allclose(computed.numpy(), exact.numpy(), rtol=0, atol=GRADIENT_SLACK * scale)


def test_keras_file_round_trip(data, tmp_path):
    x, _ = data
    model = _model(adjoint="checkpoint", checkpoints=1, adjoint_seminorm=True)
    expected = model.predict(x, batch_size=32, verbose=0)
    path = str(tmp_path / "ode.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    block = loaded.layers[0]
    assert block.options["checkpoints"] == 1 and block.options["adjoint_seminorm"]
    np.testing.assert_allclose(loaded.predict(x, batch_size=32, verbose=0), expected, rtol=1e-6)


def test_saved_model_round_trip_in_process(data, tmp_path):
    """``model.export`` traces the block with an unknown batch; the artifact serves in this process
    (the solver runs in ``tf.py_function``, which a SavedModel keeps as a reference to Python code:
    another process cannot run it)."""
    x, _ = data
    model = _model()
    expected = model(x[:13]).numpy()
    model.export(str(tmp_path / "saved"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(served.serve(tf.constant(x[:13])).numpy(), expected, rtol=1e-6, atol=1e-7)
