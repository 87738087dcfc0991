"""The tenant domain: the tenant record, its lifecycle, provisioning steps, offboarding, fleet
migrations and the warm pool of pre-built schemas."""
