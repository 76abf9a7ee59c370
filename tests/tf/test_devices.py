"""Where the compiled dynamics run, checked on CPU; and ODEBlock under MirroredStrategy and
MultiWorkerMirroredStrategy.

No GPU with TensorFlow is available to this project's checks, so placement is made explicit
(every operation of the compiled dynamics carries the device of its scope) and checked by
inspecting the traced graph, which names the device whether or not it exists. (The earlier GPU
test read ``tensor.device`` inside a trace, where it is always empty: it could never pass.)
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

tf = pytest.importorskip("tensorflow")
otf = pytest.importorskip("odegrad.tf")

from odegrad.tf.compile import cache_of, compile_dynamics, default_device  # noqa: E402


def _placed_devices(compiled, n):
    """Devices of the computation's operations; inputs, outputs and variable reads (which TF
    colocates with the variable, wherever it lives) are not the dynamics' own."""
    graph = compiled.get_concrete_function().graph
    own = [op for op in graph.get_operations()
           if op.type not in ("Placeholder", "NoOp", "Identity", "ReadVariableOp")]
    return {op.device for op in own}


def test_default_device_follows_the_visible_devices(monkeypatch):
    assert default_device(tf.ones([2])) == "/CPU:0"
    real = tf.config.list_logical_devices

    def with_gpu(kind=None):
        return [tf.config.LogicalDevice("/device:GPU:0", "GPU")] if kind == "GPU" else real(kind)

    monkeypatch.setattr(tf.config, "list_logical_devices", with_gpu)
    assert default_device(tf.ones([2])) == "/GPU:0"
    with tf.Graph().as_default(), tf.device("/device:CPU:1"):
        assert default_device(tf.zeros([2])).endswith("CPU:1")   # a replica's device scope wins


@pytest.mark.parametrize("device", ["/GPU:0", "/CPU:0"])
def test_every_operation_of_the_compiled_dynamics_is_placed(device):
    dense = tf.keras.layers.Dense(4)
    dense.build((None, 4))

    def flat(y, t):
        return tf.reshape(dense(tf.reshape(y, [2, 4])) * tf.cast(t, y.dtype), [-1])

    compiled = compile_dynamics(flat, 8, tf.float32, device=device)
    devices = _placed_devices(compiled, 8)
    assert devices == {tf.DeviceSpec.from_string(device).to_string()}


def test_odeint_places_its_dynamics_on_the_requested_device():
    w = tf.Variable(-1.0)

    def f(t, y):
        return w * y

    otf.odeint(f, tf.ones([3]), [0.0, 1.0], device="/CPU:0")
    (compiled,) = cache_of(f).values()
    assert _placed_devices(compiled, 3) == {"/device:CPU:0"}


MIRRORED = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import odegrad.tf as otf
    from tests.tf.test_tf import SmallDynamics

    def build():
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential([tf.keras.Input((2,)), otf.ODEBlock(SmallDynamics(), rtol=1e-6, atol=1e-6),
                                     tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
        return model

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype("float32")
    y = (x[:, :1] * x[:, 1:]).astype("float32")

    def gradients(model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]

    single = gradients(build())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build()
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(64))

    @tf.function
    def replica_gradients(inputs):
        def one(xs, ys):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((model(xs) - ys) ** 2) / 64.0
            return tape.gradient(loss, model.trainable_variables)
        per_replica = strategy.run(one, args=inputs)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in per_replica]

    mirrored = [g.numpy() for g in replica_gradients(next(iter(dataset)))]
    start = model.evaluate(x, y, batch_size=32, verbose=0)
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0)
    json.dump({"replicas": strategy.num_replicas_in_sync,
               "max_rel_diff": max(float(np.max(np.abs(a - b)) / np.max(np.abs(a))) for a, b in zip(single, mirrored)),
               "start": start, "end": history.history["loss"][-1]}, sys.stdout)
''')


def test_mirrored_strategy_trains_and_matches_single_device_gradients():
    """Two logical CPU devices (set before TensorFlow starts, hence a subprocess): the replicas'
    solves run concurrently in threads, so the non-re-entrant scipy solvers must take turns."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, cwd=root, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    # each replica solves half the batch at rtol = atol = 1e-6: solutions differ within tolerance
    assert result["max_rel_diff"] < 1e-4
    assert result["end"] < result["start"]


MULTI_WORKER = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf
    import odegrad.tf as otf
    from tests.tf.test_tf import SmallDynamics

    strategy = tf.distribute.MultiWorkerMirroredStrategy()   # first (collectives); cluster from TF_CONFIG

    def build():
        tf.keras.utils.set_random_seed(0)
        return tf.keras.Sequential([tf.keras.Input((2,)), otf.ODEBlock(SmallDynamics(), rtol=1e-6, atol=1e-6),
                                    tf.keras.layers.Dense(1)])

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype("float32")
    y = (x[:, :1] * x[:, 1:]).astype("float32")
    single = build()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((single(x) - y) ** 2)
    expected = [g.numpy() for g in tape.gradient(loss, single.trainable_variables)]
    with strategy.scope():
        model = build()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).with_options(options)

    @tf.function
    def step(inputs):
        def one(xs, ys):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((model(xs) - ys) ** 2) / 64.0
            return tape.gradient(loss, model.trainable_variables)
        per_replica = strategy.run(one, args=inputs)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in per_replica]

    got = [g.numpy() for g in step(next(iter(strategy.experimental_distribute_dataset(dataset))))]
    json.dump({"replicas": strategy.num_replicas_in_sync,
               "max_rel_diff": max(float(np.max(np.abs(a - b)) / np.max(np.abs(a))) for a, b in zip(expected, got))},
              sys.stdout)
''')


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_all_reduces_the_workers_gradients():
    """Two worker processes on this host (TF_CONFIG), one CPU replica each: each solves its half of
    the batch on its own host and the all-reduced gradient is the single-device one. A custom loop,
    as Keras 3's ``fit`` does not run under this strategy for any model (keras-team/keras#20585)."""
    import socket

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    workers = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": root, "TF_CONFIG": config}
        workers.append(subprocess.Popen([sys.executable, "-c", MULTI_WORKER], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=root, env=env))
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["replicas"] == 2
        assert result["max_rel_diff"] < 1e-4
