"""Databases being synced: one Tenant per database and the service that runs them."""
