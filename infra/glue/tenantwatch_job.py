"""The script the stack's AWS Glue job runs (infra/template.yaml, ``GlueJob``): the job's work is
``pipeline.glue_job``, installed with the project's wheel (``--additional-python-modules``), so
that what runs in Glue is the package's tested code. Glue passes the job run's arguments
(``--window-start ...``, the job's defaults and those of the run) on the command line."""

import sys

from pipeline.glue_job import main

code = main(sys.argv[1:])
if code:  # a clean return is a succeeded run; an exception fails it with its message
    sys.exit(code)
