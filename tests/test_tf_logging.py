"""TensorFlow's native start-up lines are hidden on import of nachos_tf, and shown when the import fails."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# tf_logging.py loaded on its own (the package's __init__ would import the real Keras on top of the stand-in)
LOAD = ("import importlib.util as u; s = u.spec_from_file_location('tf_logging', %r); m = u.module_from_spec(s); "
        "s.loader.exec_module(m)\n" % os.path.join(ROOT, "nachos_tf", "tf_logging.py"))


def _run(code, extra_path=None):
    env = dict(os.environ)
    env.pop("NACHOS_TF_VERBOSE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, ROOT) if p)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_import_leaves_stderr_clean():
    r = _run("import nachos_tf, keras; print(keras.ops.sum(keras.ops.ones(3)))")
    assert r.returncode == 0, r.stderr
    assert "3.0" in r.stdout
    assert "absl::InitializeLog" not in r.stderr and "I0000" not in r.stderr and "cuInit" not in r.stderr, r.stderr


def test_failed_import_shows_what_native_code_wrote(tmp_path):
    # a stand-in tensorflow that writes to file descriptor 2 (as C++ does) and then fails
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(textwrap.dedent("""
        import os
        os.write(2, b"native: libfoo.so missing\\n")
        raise ImportError("tensorflow is broken")
    """))
    r = _run(LOAD + "m.import_tensorflow_quietly()", extra_path=str(tmp_path))
    assert r.returncode != 0
    assert "native: libfoo.so missing" in r.stderr
    assert "ImportError: tensorflow is broken" in r.stderr


def test_verbose_switch_skips_the_capture(tmp_path):
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'native chatter\\n')\n")
    r = _run("import os; os.environ['NACHOS_TF_VERBOSE'] = '1'\n" + LOAD + "m.import_tensorflow_quietly()\n"
             "import tensorflow\n", extra_path=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "native chatter" in r.stderr


def test_int8_conversion_keeps_the_converter_prints_off_stderr():
    code = textwrap.dedent("""
        import nachos_tf
        import numpy as np, keras
        from tflite_export.quantize import to_int8_tflite
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        b = to_int8_tflite(m, np.random.default_rng(0).normal(size=(8, 4)).astype("float32"), num_samples=8)
        print("bytes", len(b))
    """)
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert "bytes" in r.stdout
    assert "fully_quantize" not in r.stderr and "I0000" not in r.stderr, r.stderr
