"""An example tenantwatch detector plugin (``bulk_tenant_read``)."""
