"""Every code block of the README runs as written, on the embedded model.

The Python blocks run in order in one namespace, the shell blocks command by command, both in a
folder holding the files the README names: `my_model.keras` and `models/classifier` (the embedded
model as a Keras file and as a TF Serving export with a float and a bytes-signature version),
`photo.jpg`, `photos/` and `labels.txt`. The first block (`make demo`, `make test`) is checked
with `make -n`: running `make test` from a test would run the suite inside itself.

A `tfsal ...` command runs in this process through `tfsal.cli.main` (the console script's entry
point; one TensorFlow start instead of one per command), `python -m tfsal ...` and anything else
with a real process. A block whose first line is `# not run: <why>` is only shown (a cluster
example); one whose first line is `# needs: tfsal[beam]` runs where that extra is installed.
"""

import importlib.util
import os
import re
import shlex
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


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a shell block, as argument lists (continuations joined, comments cut)."""
    lines = code.replace("\\\n", " ").splitlines()
    return [argv for argv in (shlex.split(line, comments=True) for line in lines) if argv]


def skip_reason(code: str) -> str | None:
    """Why a block is not run here, from its first line's marker; None: it runs."""
    first = code.splitlines()[0] if code.strip() else ""
    if first.startswith("# not run:"):
        return first
    if first.startswith("# needs: tfsal[beam]") and importlib.util.find_spec("apache_beam") \
            is None:
        return first
    return None


def run_shell_block(code: str, number: int, workspace: Path, env: dict) -> None:
    from tfsal.cli import main

    for argv in shell_commands(code):
        where = f"block {number}: {shlex.join(argv)}"
        if argv[0] == "tfsal":
            try:
                status = main(argv[1:])
            except SystemExit as exc:  # argparse's --help and usage errors
                status = exc.code
            assert status in (0, None), where
            continue
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        done = subprocess.run(argv, cwd=workspace, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{where}\n{done.stderr[-3000:]}"


def test_shell_blocks_split_into_the_commands_bash_would_run():
    code = "tfsal a 'b c' --x \\\n    d  # a comment\n\n# only a comment\npython -m tfsal e\n"
    assert shell_commands(code) == [["tfsal", "a", "b c", "--x", "d"],
                                    ["python", "-m", "tfsal", "e"]]
    assert skip_reason("# not run: needs a cloud project\ntfsal x\n")
    assert skip_reason("tfsal x\n") is None


def test_every_other_block_runs_as_written(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    namespace: dict = {"__name__": "__readme__"}
    for number, (kind, code) in enumerate(readme_blocks()[1:], start=2):
        if skip_reason(code):
            continue
        if kind == "python":
            exec(compile(code, f"README.md block {number}", "exec"), namespace)
        else:
            run_shell_block(code, number, workspace, env)
    assert (workspace / "gradcam.png").exists() and (workspace / "sheet.png").exists()
    assert (workspace / "maps" / "report.html").exists()
