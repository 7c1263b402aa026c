"""tenantwatch: find tenant-isolation breaches in multi-tenant SaaS on AWS.

Importing this package is cheap on purpose: pandas, pyarrow and scikit-learn load only when a stage
that needs them runs (Lambda cold starts, ``tenantwatch --help``).
"""

__version__ = "0.1.0"
