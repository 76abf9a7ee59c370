"""The TensorFlow door's tests need TensorFlow (``pip install -e ".[tf]"``)."""

import pytest

pytest.importorskip("tensorflow", reason='odegrad.tf needs TensorFlow: pip install -e ".[tf]"')
