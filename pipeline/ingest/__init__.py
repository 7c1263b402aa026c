"""Ingestion: CloudTrail, API Gateway access and Lambda-authorizer logs into the Parquet lake.

``sources`` lists inputs (files, S3, CloudWatch Logs); ``gz`` decompresses with bounds;
``formats`` splits an input into records by content (``securitylake``: Amazon Security Lake's
OCSF Parquet back into CloudTrail records); ``cloudtrail`` decodes clean CloudTrail
delivery files in one typed pass and ``normalize`` turns any other record into a row (one field
extraction serves both); ``redact`` replaces secrets; ``decode`` is the worker side of a batch;
``reading`` is what the configuration asks to be read of each record (field mappings, the paths
``field`` strategies read, ``lookups``); ``tenancy`` resolves tenants with Arrow kernels
(``strategies`` one strategy at a time, ``sessions`` what AssumeRole calls started); ``run``
drives batches into the lake and is the stage (``run.ingest``), asking ``seen`` what the lake
already holds (inputs done, events' dedup keys), ``write`` writing a batch's event files and
``commit`` the rest it leaves (quarantine, digests, sessions, the record of its inputs); ``explain``
is ``tenantwatch tenancy explain``. ``pipeline.spark_ingest`` runs the same steps on Spark.
"""
