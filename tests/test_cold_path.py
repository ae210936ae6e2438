"""What a cold call pays: TensorFlow is imported without Keras (and what TensorFlow imports only for it), and a
model exported by Keras still runs, with the same values as Keras computes."""

import os
import subprocess
import sys

import numpy as np
from conftest import MODEL, PLUGINS

EXPORT = """
import sys, numpy as np, keras
model = keras.Sequential([keras.Input((None, None, 2)), keras.layers.Conv2D(3, 3, padding="same", name="conv")])
x = np.random.default_rng(0).uniform(0, 1, (1, 16, 16, 2)).astype("float32")
np.save(sys.argv[2], np.asarray(model(x)))
np.save(sys.argv[3], x)
model.export(sys.argv[1])
"""

SERVE = f"""
import sys, numpy as np
sys.path.insert(0, {str(PLUGINS)!r})
from seamless_inference.engine.model import SavedModel
model = SavedModel.load(sys.argv[1])
name = model.signature.output_names[0]
value = model.run({{model.signature.input_names[0]: np.load(sys.argv[2])}}, [name])[name]
np.save(sys.argv[3], value)
print("LEFT OUT", sorted(n for n in ("keras", "scipy", "h5py", "matplotlib") if n not in sys.modules))
"""


def child(code: str, *args) -> str:
    run = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_tensorflow_comes_without_keras_and_a_keras_export_still_runs(tmp_path):
    folder, expected, feed, got = (tmp_path / n for n in ("model", "expected.npy", "x.npy", "got.npy"))
    child(EXPORT, folder, expected, feed)
    out = child(SERVE, folder, feed, got)
    assert "LEFT OUT ['h5py', 'keras', 'matplotlib', 'scipy']" in out, out
    assert np.allclose(np.load(got), np.load(expected), atol=1e-6)


def test_the_sample_runs_without_keras(tmp_path):
    feed = tmp_path / "x.npy"
    np.save(feed, np.zeros((1, 128, 128, 1), np.float32))
    code = SERVE.replace("{model.signature.input_names[0]: np.load(sys.argv[2])}",
                         "{'input_p': np.load(sys.argv[2]), 'input_xs': np.zeros((1, 32, 32, 4), np.float32)}")
    out = child(code, MODEL, feed, tmp_path / "got.npy")
    assert "LEFT OUT ['h5py', 'keras', 'matplotlib', 'scipy']" in out, out
    assert np.load(tmp_path / "got.npy").shape[1:3] == (128, 128)
