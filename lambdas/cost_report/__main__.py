"""``python -m lambdas.cost_report``: the local cost-report command (`tenant_provisioner.cli.cost_report`)."""

from tenant_provisioner.cli.cost_report import app

app(prog_name="python -m lambdas.cost_report")
