"""Alerting: findings -> incidents -> forensic snapshots, notifications and metrics.

Pure core: ``incidents`` (findings joined into attack stories, ids), ``entities`` (what joins
them), ``query`` (which events are evidence), ``render`` (subject, text, OCSF body, limits),
``sanitize``, ``console`` (what the CLI prints). Edges: ``store`` (incident state and outbox in
the lake), ``snapshot`` (write once, verify), ``delivery`` (the at-most-once protocol) with its
channels ``sns``, ``local``, ``securityhub`` and ``eventbridge`` (the last two judge a failed
call with ``calls``), ``metrics`` (CloudWatch / EMF); AWS clients come from ``pipeline.aws``.
``run`` ties them together; import it from there (``from pipeline.alert.run import run_alert``)
so that importing this package stays cheap. The lake's lease
(``pipeline.lease``) and the run's health (``pipeline.health``) are the callers'.
"""
