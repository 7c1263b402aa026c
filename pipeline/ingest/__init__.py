"""Ingestion: CloudTrail, API Gateway access and Lambda-authorizer logs into the Parquet lake.

``sources`` lists inputs (files, S3, CloudWatch Logs); ``gz`` decompresses with bounds;
``formats`` splits an input into records by content; ``cloudtrail`` decodes clean CloudTrail
delivery files in one typed pass and ``normalize`` turns any other record into a row (one field
extraction serves both); ``redact`` replaces secrets; ``decode`` is the worker side of a batch;
``tenancy`` resolves tenants with Arrow kernels; ``run`` drives batches into the lake and is the
stage (``run.ingest``).
"""
