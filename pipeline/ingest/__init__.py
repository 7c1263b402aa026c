"""Ingestion: CloudTrail, API Gateway access and Lambda-authorizer logs into the Parquet lake.

``formats`` splits inputs into records by content, ``normalize`` turns a record into a row,
``tenancy`` resolves tenants, ``run`` drives batches into the lake. ``run.ingest`` is the stage.
"""
