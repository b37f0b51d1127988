"""Signed-saliency-maps paper: its Tables 2–3 (deletion AUCs of signed maps) and curves.

Black-deletion (fill 0) is scored for the standard, positive and active maps, white-deletion
(fill 1) for the standard, negative and inactive maps; the score is the AUC of the allegiance
curve (share of images whose prediction survives), lower = better. The paper's claim:
positive / active beat standard under black-deletion, negative / inactive under white-deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfsal import plots
from tfsal.loading import as_model
from tfsal.metrics import FRACTIONS, Curve, allegiance_curve
from tfsal.signed import signed_maps

# (fill, map kind) rows of Tables 2 and 3; the claim compares each kind with "standard"
ROWS = (("black", "standard"), ("black", "positive"), ("black", "active"),
        ("white", "standard"), ("white", "negative"), ("white", "inactive"))

PUBLISHED_MODELS = ("CIFAR CNN", "CIFAR ResNet-18", "Imagenette CNN", "Imagenette ResNet-18",
                    "ResNet-18 pretrained", "ConvNeXt")
PUBLISHED = {
    ("black", "standard"): (.23, .23, .24, .26, .28, .49),
    ("black", "positive"): (.14, .11, .12, .14, .21, .37),
    ("black", "active"): (.15, .11, .16, .14, .24, .39),
    ("white", "standard"): (.21, .22, .21, .23, .26, .46),
    ("white", "negative"): (.14, .12, .11, .18, .20, .37),
    ("white", "inactive"): (.15, .12, .14, .16, .23, .42),
}


@dataclass(frozen=True)
class DeletionTable:
    """Allegiance curves of one model's signed maps, keyed by (fill, map kind)."""

    model: str
    n_images: int
    curves: dict

    def auc(self, fill: str, kind: str) -> float:
        return self.curves[fill, kind].auc

    def claim(self) -> dict:
        """{(fill, kind): True if that signed map's AUC is below the standard map's}."""
        return {(fill, kind): self.auc(fill, kind) < self.auc(fill, "standard")
                for fill, kind in ROWS if kind != "standard"}


def deletion_table(model, images, targets=None, *, fractions=FRACTIONS) -> DeletionTable:
    """Black- and white-deletion allegiance curves of the signed maps (Tables 2–3).

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: explained classes (None = predicted; the paper explains the prediction).
        fractions: the deletion grid (default: the reference grid).

    Returns:
        a `DeletionTable`.

    Example:
        >>> table = deletion_table("shapes-cnn", make_dataset(100, seed=2).images)
        >>> table.auc("black", "positive") < table.auc("black", "standard")
    """
    model = as_model(model)
    maps = signed_maps(model, images, targets)
    curves = {(fill, kind): allegiance_curve(model, images, getattr(maps, kind), fill=fill,
                                             fractions=fractions)
              for fill, kind in ROWS}
    return DeletionTable(model.name, len(maps.targets), curves)


def table_markdown(tables: list[DeletionTable]) -> str:
    """Tables 2–3 as Markdown: tfsal's models next to the published columns."""
    ours = [f"{t.model} (n={t.n_images})" for t in tables]
    lines = ["| deletion | map | " + " | ".join(ours + list(PUBLISHED_MODELS)) + " |",
             "|---|---|" + "---|" * (len(ours) + len(PUBLISHED_MODELS))]
    for fill, kind in ROWS:
        cells = [f"**{t.auc(fill, kind):.3f}**" if t.claim().get((fill, kind)) else
                 f"{t.auc(fill, kind):.3f}" for t in tables]
        cells += [f"{v:.2f}" for v in PUBLISHED[fill, kind]]
        lines.append(f"| {fill} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def curves_figures(table: DeletionTable, out) -> list[Path]:
    """The black- and white-deletion allegiance curves of one model, one PNG each."""
    out = Path(out)
    files = []
    for fill in ("black", "white"):
        curves: dict[str, Curve] = {kind: table.curves[f, kind] for f, kind in ROWS if f == fill}
        files.append(plots.curve_plot(
            curves, out / f"{table.model}_{fill}_deletion.png", ylabel="allegiance",
            title=f"{table.model}: {fill}-deletion"))
    return files
