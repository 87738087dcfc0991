"""``python -m tenant_provisioner``: the operator CLI."""

from tenant_provisioner.cli.main import app

app(prog_name="tenant-provisioner")
