"""Package hygiene: the import is light and side-effect free, the public API is complete."""

import subprocess
import sys

import tfsal


def test_import_does_not_load_optional_heavy_modules():
    # TensorFlow and Keras themselves set environment variables and may pull in matplotlib;
    # what is checked is what importing tfsal adds on top of them.
    code = ("import os, sys, tensorflow, keras; env = dict(os.environ); had = set(sys.modules); "
            "import tfsal; new = set(sys.modules) - had; "
            "bad = [m for m in ('tensorflow_hub', 'matplotlib', 'tf_keras') if m in new]; "
            "print(bad, dict(os.environ) == env)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[] True"


def test_public_api_is_exported():
    for name in tfsal.__all__:
        assert hasattr(tfsal, name), name
    for name, method in tfsal.METHODS.items():
        assert callable(method) and method.__doc__, name
