"""Stripe usage-based billing: catalog sync, subscriptions at signup, meter events, webhooks.

Modules: `settings` (Stripe client and secrets), `catalog` (products/prices/meter from the tiers
file), `accounts` (customer + subscription per tenant: the provisioning step, tier change,
cancel), `usage` (meter events behind a cursor), `webhooks` (signed events → tenant state),
`grace` (payment grace → suspension), `cli` (the ``billing`` sub-app).
"""
