"""Organisations: the tenants that own jobs, keys and voices, with their quotas."""
