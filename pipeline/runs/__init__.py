"""Runs: the stages called in order, under the lake's lease, each run measuring the pipeline's
health once. One package for both ways a run starts:

- ``pipeline.runs.on_demand``: the CLI's ``tenantwatch run`` (ingest, detect, alert) and
  ``tenantwatch alert``;
- ``pipeline.runs.unattended``: the Lambda functions' scheduled and S3-object runs (windows, a
  watermark in ``pipeline.runs.watermark`` and a time budget around the stages);
- ``pipeline.runs.subscription``: the run of a CloudWatch Logs subscription's payload (stored in
  an S3 inbox, then ingested and detected as an S3-object run).
- ``pipeline.runs.handoff``: the scheduled run's hand-off of a window too large for Lambda to the
  AWS Glue job (``pipeline.glue_job``, which detects and alerts it through the same ``Stages``).

Each stage hands back a typed result (``pipeline.runs.results``: ``IngestResult``,
``DetectResult``, ``AlertResult``), a run holds them in a ``RunResult``, and
``pipeline.health.RunHealth.measure`` turns that into the health both kinds of run send.
``pipeline.runs.stages`` calls the stages; it is also the seam a test can re-point.

Importing this package is cheap (the Lambda handler imports it): the stages load pyarrow, pandas
and scikit-learn on first use.
"""

from pipeline.runs.results import AlertResult, DetectResult, IngestResult, RunResult

__all__ = ["AlertResult", "DetectResult", "IngestResult", "RunResult"]
