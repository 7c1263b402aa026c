"""Alerting: findings -> incidents -> forensic snapshots, notifications and metrics.

Pure core: ``incidents`` (grouping, ids), ``query`` (which events are evidence), ``render``
(subject, text, OCSF body, limits), ``sanitize``. Edges: ``store`` (incident state and outbox in
the lake), ``snapshot`` (write once, verify), ``delivery`` (the at-most-once protocol) with its
channels ``sns`` and ``local``, ``metrics`` (CloudWatch / EMF), ``aws`` (clients). ``run`` ties
them together; import it from there (``from pipeline.alert.run import run_alert``) so that
importing this package stays cheap.
"""
