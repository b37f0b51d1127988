"""Every code block of the README runs as written, on the embedded model.

The Python blocks run in order in one namespace, the shell blocks with bash, both in a folder
holding the files the README names: `my_model.keras` and `models/classifier` (the embedded
model as a Keras file and as a TF Serving export with a float and a bytes-signature version),
`photo.jpg`, `photos/` and `labels.txt`. The first block (`make demo`, `make test`) is checked
with `make -n`: running `make test` from a test would run the suite inside itself.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import tensorflow as tf
    from test_model_forms import PngSignature

    import tfsal
    from tfsal.data import make_dataset
    from tfsal.zoo import SHAPES_CNN

    root = tmp_path_factory.mktemp("readme")
    keras_model = tfsal.zoo.load("shapes-cnn")
    keras_model.save(root / "my_model.keras")
    keras_model.export(root / "models" / "classifier" / "1", verbose=False)
    module = PngSignature(keras_model, 64, tfsal.model._preprocess_fn("tf"))
    tf.saved_model.save(module, str(root / "models" / "classifier" / "3"),
                        signatures={"serving_default": module.serve})
    data = make_dataset(3, size=64, seed=7)
    pixels = (data.images * 255).round().astype("uint8")
    Image.fromarray(pixels[0]).save(root / "photo.jpg", quality=95)
    (root / "photos").mkdir()
    for i, image in enumerate(pixels[1:]):
        Image.fromarray(image).save(root / "photos" / f"shape{i}.png")
    (root / "labels.txt").write_text("\n".join(SHAPES_CNN.class_names) + "\n")
    return root


def test_the_readme_has_python_and_shell_blocks():
    kinds = [kind for kind, _ in readme_blocks()]
    assert kinds.count("python") >= 4 and kinds.count("sh") >= 5
    assert set(kinds) <= {"python", "sh"}  # every block is one the test runs


def test_make_demo_and_make_test_are_the_first_block():
    kind, first = readme_blocks()[0]
    commands = [line.split("#")[0].split() for line in first.splitlines()]
    assert kind == "sh" and commands == [["make", "demo"], ["make", "test"]]
    for command in commands:
        subprocess.run([*command, "-n"], cwd=ROOT, check=True, capture_output=True)


def test_every_other_block_runs_as_written(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    namespace: dict = {"__name__": "__readme__"}
    for number, (kind, code) in enumerate(readme_blocks()[1:], start=2):
        if kind == "python":
            exec(compile(code, f"README.md block {number}", "exec"), namespace)
        else:
            done = subprocess.run(["bash", "-e", "-c", code], cwd=workspace, env=env,
                                  capture_output=True, text=True)
            assert done.returncode == 0, f"block {number}:\n{code}\n{done.stderr[-3000:]}"
    assert (workspace / "gradcam.png").exists() and (workspace / "sheet.png").exists()
    assert (workspace / "maps" / "report.html").exists()
