"""``python -m tenant_provisioner``: the operator CLI."""

from tenant_provisioner.cli import app

app(prog_name="tenant-provisioner")
