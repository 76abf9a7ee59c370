"""The tests of experiments.mnist need Keras and TensorFlow (``pip install -e ".[experiments]"``); those of
experiments.mnist.data, which does not, are in tests/experiments/test_mnist_data.py."""

import pytest

pytest.importorskip("keras", reason='the Table 1 experiments need TensorFlow: pip install -e ".[experiments]"')
pytest.importorskip("tensorflow", reason='the Table 1 experiments need TensorFlow: pip install -e ".[experiments]"')
