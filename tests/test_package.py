"""Package hygiene: the import is light and side-effect free, the public API is complete."""

import inspect
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


def test_every_method_is_the_public_function_and_keeps_the_calling_convention():
    """What `evaluate` and the command line call is what users call: `METHODS[name]` is
    `tfsal.<name>`, with the data positional (model, images, targets=None) and every
    hyperparameter keyword-only (ARCHITECTURE.md, "Hyperparameters")."""
    for name, method in tfsal.METHODS.items():
        assert getattr(tfsal, name) is method, name
        parameters = list(inspect.signature(method).parameters.values())
        assert [p.name for p in parameters[:3]] == ["model", "images", "targets"], name
        assert parameters[2].default is None, name
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in parameters[3:]), name
        assert "Args" in method.__doc__ and "Returns" in method.__doc__, name
