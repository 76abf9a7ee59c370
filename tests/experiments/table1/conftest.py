"""The Table 1 / Figure 3 tests need Keras and TensorFlow (``pip install -e ".[experiments]"``)."""

import pytest

pytest.importorskip("keras", reason='the Table 1 experiments need TensorFlow: pip install -e ".[experiments]"')
pytest.importorskip("tensorflow", reason='the Table 1 experiments need TensorFlow: pip install -e ".[experiments]"')
