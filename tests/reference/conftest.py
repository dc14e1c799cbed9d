"""The reference tests run the library a write-up's author ran. Keras 3 is a test dependency and runs here on
the torch backend, which must be chosen before keras is first imported."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
