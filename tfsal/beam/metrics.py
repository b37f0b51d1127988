"""Metrics at scale: per-image scores with tfsal's metric functions, and Beam CombineFns that
aggregate them over a whole data set (count, mean, standard deviation, standard error).

Per-image scores (each map reduced by `tfsal.evaluation.comparable`: abs-max over channels,
CAM maps upsampled to the image):

- deletion, insertion, allegiance: the area under the image's own curve
  (`tfsal.metrics.deletion_curve` / `insertion_curve` / `allegiance_curve`, per_image,
  trapezoid over the fractions). The mean over images equals the AUC of the mean curve that
  `tfsal evaluate` reports (the trapezoid is linear).
- total_variation: of the map scaled to max |value| 1 (`tfsal.evaluation.scaled_total_variation`,
  as `tfsal evaluate total_variation`).
- nonzero_fraction: share of pixels with nonzero attribution (`metrics.nonzero_fraction`).
"""

from __future__ import annotations

import csv
import io
import json
import math

import apache_beam as beam
import numpy as np

from tfsal.errors import TfsalError

CURVE_METRICS = ("deletion", "insertion", "allegiance")
METRICS = (*CURVE_METRICS, "total_variation", "nonzero_fraction")


def check_metrics(metrics) -> tuple:
    """The metric names, each once ("all" for every one)."""
    metrics = list(metrics or ())
    if "all" in metrics:
        return METRICS
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise TfsalError(f"expected metrics from {list(METRICS)} or 'all', received {unknown}")
    return tuple(dict.fromkeys(metrics))


def per_image_scores(model, images, targets, maps, metrics, *, fill="black") -> dict:
    """{metric: (N,) float} for one method's maps of `images`."""
    if not metrics:
        return {}
    from tfsal.evaluation import CURVES, comparable, scaled_total_variation
    from tfsal.metrics import nonzero_fraction

    maps = comparable(np.asarray(maps), images)
    scores = {}
    for metric in metrics:
        if metric in CURVE_METRICS:
            score = CURVES[metric]
            curve = (score(model, images, maps, fill=fill) if metric == "allegiance"
                     else score(model, images, maps, targets, fill=fill))
            values = np.trapezoid(curve.per_image.astype(np.float64), curve.fractions, axis=1)
        elif metric == "total_variation":
            values = scaled_total_variation(maps)
        else:
            values = nonzero_fraction(maps)
        scores[metric] = [float(v) for v in values]
    return scores


class Statistics(beam.CombineFn):
    """Count, mean, standard deviation (ddof 1) and standard error of numbers; NaN values
    are counted apart ("nan") and left out. Exact merging (Chan et al.), so the order in
    which workers combine does not matter beyond rounding."""

    def create_accumulator(self):
        return (0, 0.0, 0.0, 0)  # count, mean, sum of squared deviations, NaNs

    def add_input(self, accumulator, value):
        n, mean, m2, nans = accumulator
        value = float(value)
        if math.isnan(value):
            return n, mean, m2, nans + 1
        n += 1
        delta = value - mean
        mean += delta / n
        return n, mean, m2 + delta * (value - mean), nans

    def merge_accumulators(self, accumulators):
        n, mean, m2, nans = self.create_accumulator()
        for bn, bmean, bm2, bnans in accumulators:
            if bn:
                total = n + bn
                delta = bmean - mean
                mean += delta * bn / total
                m2 += bm2 + delta * delta * n * bn / total
                n = total
            nans += bnans
        return n, mean, m2, nans

    def extract_output(self, accumulator):
        n, mean, m2, nans = accumulator
        std = math.sqrt(m2 / (n - 1)) if n > 1 else None
        return {"count": n, "mean": _rounded(mean) if n else None,
                "std": None if std is None else _rounded(std),
                "sem": None if std is None else _rounded(std / math.sqrt(n)), "nan": nans}


def _rounded(value: float) -> float:
    """12 significant digits: sums merged in another order give the same summary bytes."""
    return float(f"{value:.12g}")


class SummaryCombineFn(beam.CombineFn):
    """Per-image records → the data set's summary: images, and `Statistics` of every
    (method tag, target rank, metric) in the records' scores; `tags` and `metrics`, if given,
    keep only those (a record also lists maps of other runs into the same folder)."""

    def __init__(self, tags=None, metrics=None):
        self._stats = Statistics()
        self.tags = None if tags is None else frozenset(tags)
        self.metrics = None if metrics is None else frozenset(metrics)

    def create_accumulator(self):
        return {"images": 0, "stats": {}}

    def add_input(self, accumulator, record):
        accumulator["images"] += 1
        stats = accumulator["stats"]
        for entry in record.get("maps", ()):
            if self.tags is not None and entry["tag"] not in self.tags:
                continue
            for metric, value in (entry.get("scores") or {}).items():
                if self.metrics is not None and metric not in self.metrics:
                    continue
                key = (entry["tag"], int(entry["rank"]), metric)
                stats[key] = self._stats.add_input(
                    stats.get(key, self._stats.create_accumulator()), value)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            merged["images"] += accumulator["images"]
            for key, value in accumulator["stats"].items():
                merged["stats"][key] = self._stats.merge_accumulators(
                    [merged["stats"].get(key, self._stats.create_accumulator()), value])
        return merged

    def extract_output(self, accumulator):
        metrics = {}
        for (tag, rank, metric), value in sorted(accumulator["stats"].items()):
            metrics.setdefault(tag, {}).setdefault(f"rank{rank}", {})[metric] = \
                self._stats.extract_output(value)
        return {"images": accumulator["images"], "metrics": metrics}


def summary_files(summary: dict) -> tuple[bytes, bytes]:
    """(JSON, CSV) bytes of a summary: the CSV has one row per method tag, target rank and
    metric with count, mean, std, sem and NaN count."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("method", "rank", "metric", "count", "mean", "std", "sem", "nan"))
    for tag, ranks in summary["metrics"].items():
        for rank, metrics in ranks.items():
            for metric, s in metrics.items():
                writer.writerow((tag, rank[4:], metric, s["count"], _cell(s["mean"]),
                                 _cell(s["std"]), _cell(s["sem"]), s["nan"]))
    return (json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n",
            text.getvalue().encode())


def _cell(value) -> str:
    return "" if value is None else repr(value)
