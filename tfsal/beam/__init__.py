"""Explaining data sets on Apache Beam: the same maps as `tfsal explain DIR --out OUT`, on
DirectRunner here and on Dataflow, Flink or Spark at scale.

    images ──► ReadImages / ReadImagesFromTFRecord ──► ExplainImages ──► WriteSummary
               (glob on any Beam file system,          (RunInference with           (metrics'
                or encoded images in TFRecords)         TfsalModelHandler: maps,     mean, std,
                                                        per-image records, dead      sem, count:
                                                        letters)                     JSON + CSV)

Outputs land in the run folder the local command uses, `OUT/<model>-<digest>/`, named by the
run fingerprint (`tfsal.runs.run_fingerprint`: model weights digest, score, target rule,
tfsal version; the method and its parameters are in each map's name), with the same file
names and bytes: `<input path>.<method>.class<c>.npy`. Every file is written to a temporary
name and renamed into place; a rerun skips images whose record (`<input path>.record.json`,
written after their maps) matches the input's bytes, so retries and resumes are idempotent.

Importing this package needs `apache-beam` (`pip install "tfsal[beam]"`); `import tfsal`
never imports it.
"""

from __future__ import annotations

from tfsal.beam._require import require_beam

require_beam()

from tfsal.beam.handler import TfsalModelHandler, method_cost  # noqa: E402
from tfsal.beam.io import (  # noqa: E402
    ImageInput,
    ReadImages,
    ReadImagesFromTFRecord,
    pattern_root,
)
from tfsal.beam.metrics import METRICS, Statistics, SummaryCombineFn  # noqa: E402
from tfsal.beam.pipeline import (  # noqa: E402
    BeamRun,
    ExplainImages,
    WriteSummary,
    explain_pipeline,
    prepare_run,
)

__all__ = ["METRICS", "BeamRun", "ExplainImages", "ImageInput", "ReadImages",
           "ReadImagesFromTFRecord", "Statistics", "SummaryCombineFn", "TfsalModelHandler",
           "WriteSummary", "explain_pipeline", "method_cost", "pattern_root", "prepare_run"]
