"""Pre-deploy checks against the real account: ``make preflight ENV=prod`` (one line per check).

What a first deploy or a release meets only too late, checked with the caller's credentials before
``cdk deploy``: the credentials' account, configuration examples, the API's ACM certificate (exists,
issued, in the cluster's region, covers the API domain, not about to expire), the Lambda concurrency quota
against the reserved concurrency of the synthesized templates, SES sender identities and production
access, cost-allocation tags, the secrets the stacks need (Stripe, BetterStack), with dev and prod in
two accounts that prod's release role may pull dev's images, the CDK bootstrap version, and that
every GitHub variable the workflows read is documented. Exit 1 when any check FAILs; WARN lines
are things the first deploy creates (do them right after it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stacks.config import LAMBDA_UNRESERVED_MINIMUM, EnvConfig, load_config
from stacks.placeholders import example_values
from stacks.registry_stack import PULL_ACTIONS, SERVICES
from tenant_provisioner.billing.settings import API_KEY_PREFIXES, WEBHOOK_SECRET_PREFIX
from tools.synth_summary import reserved_concurrency

REPO_ROOT = Path(__file__).resolve().parents[1]
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
CONCURRENCY_QUOTA_CODE = "L-B99A9384"
ENVIRONMENT_TAG = "environment"
CERTIFICATE_WARN_DAYS = 30
_CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):certificate/.+$")
_WORKFLOW_VARIABLE = re.compile(r"\bvars\.([A-Z][A-Z0-9_]*)|format\('([A-Z][A-Z0-9_]*)_\{0\}'")


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str

    def __str__(self) -> str:
        return f"{self.status}  {self.name:<32} {self.detail}"


@dataclass(frozen=True)
class Clients:
    """boto3 clients of the target account (Cost Explorer answers only in us-east-1)."""

    sts: object
    lambda_: object
    sesv2: object
    cost_explorer: object
    secrets: object
    ssm: object
    ecr: object = None
    cloudformation: object = None
    acm: object = None

    @classmethod
    def from_session(cls, session: boto3.session.Session) -> Clients:
        return cls(sts=session.client("sts"), lambda_=session.client("lambda"), sesv2=session.client("sesv2"),
                   cost_explorer=session.client("ce", region_name="us-east-1"),
                   secrets=session.client("secretsmanager"), ssm=session.client("ssm"),
                   ecr=session.client("ecr"), cloudformation=session.client("cloudformation"),
                   acm=session.client("acm"))


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def check_account(config: EnvConfig, clients: Clients) -> list[Check]:
    account = clients.sts.get_caller_identity()["Account"]
    if account != config.account:
        return [Check(FAIL, "credentials", f"credentials are for account {account}, the check targets "
                                            f"{config.account}: pass ACCOUNT={account} or switch profile")]
    return [Check(PASS, "credentials", f"account {account}")]


def check_configuration(config: EnvConfig, _clients: Clients) -> list[Check]:
    found = example_values(config)
    if found:
        return [Check(FAIL, "configuration", f"{len(found)} value(s) at their examples: "
                      + "; ".join(f"{item.path}" for item in found) + " (docs/configuration.md)")]
    return [Check(PASS, "configuration", "no value left at its example")]


def certificate_covers(name: str, host: str) -> bool:
    """Does a certificate's name cover ``host``: the same name, or a wildcard ``*.`` standing for
    exactly one leftmost label (``*.acme.io`` covers ``api.acme.io``, not ``api.dev.acme.io``)."""
    name, host = name.lower().rstrip("."), host.lower().rstrip(".")
    if name.startswith("*."):
        label, _, parent = host.partition(".")
        return bool(label) and parent == name[2:]
    return name == host


def _certificate_expiry(certificate: dict, arn: str) -> tuple[str, str]:
    """(status, detail) of an issued certificate's expiry: WARN within CERTIFICATE_WARN_DAYS."""
    not_after = certificate["NotAfter"]
    days = (not_after - dt.datetime.now(dt.timezone.utc)).days
    expiry = f"expires {not_after:%Y-%m-%d} (in {days} days)"
    if days >= CERTIFICATE_WARN_DAYS:
        return PASS, expiry
    if certificate.get("Type") == "IMPORTED":
        return WARN, (f"{expiry}: imported, so ACM does not renew it: re-import the renewed one "
                      f"(aws acm import-certificate --certificate-arn {arn} ...)")
    renewal = certificate.get("RenewalSummary", {}).get("RenewalStatus", "not started")
    return WARN, (f"{expiry}: ACM renews a DNS-validated certificate in use from 60 days before expiry, "
                  f"renewal is {renewal}: check its validation CNAME records are still in the DNS zone "
                  "(aws acm describe-certificate)")


def check_certificate(config: EnvConfig, clients: Clients) -> list[Check]:
    """``workloads.certificate_arn``: exists in the cluster's account and region, ISSUED, covers
    ``workloads.api_domain`` (a name or a wildcard of its SANs), and not expiring within 30 days."""
    name, arn, host = "acm certificate", config.workloads.certificate_arn, config.workloads.api_domain
    parsed = _CERTIFICATE_ARN.match(arn)
    if not parsed:
        return [Check(FAIL, name, f"workloads.certificate_arn {arn!r} is not an ACM certificate ARN "
                                  "(docs/configuration.md)")]
    if parsed["region"] != config.region:
        return [Check(FAIL, name, f"{arn} is in {parsed['region']}, the cluster in {config.region}: the ALB takes "
                                  f"only a certificate of its own region; request one in {config.region} "
                                  "(README checklist step 2)")]
    if parsed["account"] != config.account:
        return [Check(FAIL, name, f"{arn} is in account {parsed['account']}, the environment in {config.account}: "
                                  "request it in the environment's account (README checklist step 2)")]
    try:
        certificate = clients.acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
        return [Check(FAIL, name, f"{arn} does not exist: request it (README checklist step 2) and set "
                                  "workloads.certificate_arn to its ARN")]
    problems = []
    status = certificate.get("Status", "")
    if status == "PENDING_VALIDATION":
        problems.append("PENDING_VALIDATION: add the CNAME records `aws acm describe-certificate` lists to the "
                        "DNS zone and wait for ISSUED (the ALB cannot use it before)")
    elif status != "ISSUED":
        problems.append(f"{status or 'no status'}: request a new certificate and set workloads.certificate_arn")
    names = [n for n in [certificate.get("DomainName"), *certificate.get("SubjectAlternativeNames", [])] if n]
    if not any(certificate_covers(n, host) for n in names):
        problems.append(f"does not cover {host} (names: {', '.join(dict.fromkeys(names)) or 'none'}): request one "
                        f"for {host} (README checklist step 2)")
    if problems:
        return [Check(FAIL, name, "; ".join(problems))]
    status, expiry = _certificate_expiry(certificate, arn)
    return [Check(status, name, f"ISSUED, covers {host}, {expiry}")]


def check_concurrency(config: EnvConfig, clients: Clients, *, reserved: dict[str, int]) -> list[Check]:
    quota = int(clients.lambda_.get_account_settings()["AccountLimit"]["ConcurrentExecutions"])
    own = reserved.get(config.name, 0)
    needed = own + LAMBDA_UNRESERVED_MINIMUM
    everyone = sum(reserved.values()) + LAMBDA_UNRESERVED_MINIMUM
    configured = config.concurrency.account_quota
    if quota < configured:
        # synth validated the reservations against a quota the account does not have
        configured_check = Check(FAIL, "concurrency.account_quota",
                                 f"configured {configured} but the account's quota is {quota}: set "
                                 f"concurrency.account_quota = {quota} (stacks/config.py) so synth checks against it")
    else:
        configured_check = Check(PASS, "concurrency.account_quota", f"configured {configured} <= the account's {quota}")
    if quota < needed:
        return [Check(FAIL, "lambda concurrency quota",
                      f"quota {quota} < {needed} needed ({own} reserved + {LAMBDA_UNRESERVED_MINIMUM} unreserved): "
                      "request an increase in Service Quotas (AWS Lambda, Concurrent executions, "
                      f"{CONCURRENCY_QUOTA_CODE}) or lower concurrency.* (docs/configuration.md)"), configured_check]
    if quota < everyone:
        return [Check(WARN, "lambda concurrency quota",
                      f"quota {quota} fits {config.name} ({needed}) but not every environment in one account "
                      f"({everyone})"), configured_check]
    return [Check(PASS, "lambda concurrency quota", f"quota {quota} >= {needed} needed "
                                                    f"({own} reserved + {LAMBDA_UNRESERVED_MINIMUM} unreserved)"),
            configured_check]


def check_ses_identities(config: EnvConfig, clients: Clients) -> list[Check]:
    checks = []
    for address in sorted({config.cost_report.sender, config.limits.notification_sender}):
        name = f"ses identity {address}"
        try:
            identity = clients.sesv2.get_email_identity(EmailIdentity=address)
        except ClientError as error:
            if _error_code(error) != "NotFoundException":
                raise
            checks.append(Check(WARN, name, "not created yet: deploy saas-shared-account, then click the link "
                                            "SES mails to the address"))
            continue
        if identity.get("VerifiedForSendingStatus"):
            checks.append(Check(PASS, name, "verified for sending"))
        else:
            checks.append(Check(FAIL, name, f"not verified ({identity.get('VerificationStatus', 'PENDING')}): "
                                            "click the link SES mailed to the address, or resend it in the SES console"))
    return checks


def check_ses_account(_config: EnvConfig, clients: Clients) -> list[Check]:
    account = clients.sesv2.get_account()
    if not account.get("ProductionAccessEnabled"):
        return [Check(FAIL, "ses production access", "the account is in the SES sandbox (mail reaches verified "
                      "recipients only): SES console → Account dashboard → Request production access")]
    if not account.get("SendingEnabled", True):
        return [Check(FAIL, "ses production access", "sending is paused for this account (SES console)")]
    return [Check(PASS, "ses production access", "production access, sending enabled")]


def check_cost_allocation_tags(config: EnvConfig, clients: Clients) -> list[Check]:
    keys = sorted({config.cost_report.tenant_tag_key, ENVIRONMENT_TAG, *(k for k in [config.cost_report.scope_tag_key] if k)})
    statuses = {tag["TagKey"]: tag["Status"]
                for tag in clients.cost_explorer.list_cost_allocation_tags(TagKeys=keys)["CostAllocationTags"]}
    checks = []
    for key in keys:
        status = statuses.get(key)
        if status == "Active":
            checks.append(Check(PASS, f"cost allocation tag {key}", "active"))
        else:
            checks.append(Check(FAIL, f"cost allocation tag {key}",
                                f"{(status or 'not seen yet').lower()}: Billing → Cost allocation tags → activate it "
                                "(a tag appears there up to 24 h after a resource first carries it; "
                                "enable Cost Explorer first)"))
    return checks


def _secret_value(clients: Clients, secret_id: str) -> str | None:
    try:
        return clients.secrets.get_secret_value(SecretId=secret_id).get("SecretString", "")
    except ClientError as error:
        if _error_code(error) == "ResourceNotFoundException":
            return None
        raise


def check_secrets(config: EnvConfig, clients: Clients) -> list[Check]:
    prefix = f"{config.tenants.secrets_prefix}/platform/stripe"
    checks = []
    for suffix, prefixes, what in (("api-key", API_KEY_PREFIXES, "Stripe secret key (sk_… or rk_…)"),
                                   ("webhook-signing-secret", (WEBHOOK_SECRET_PREFIX,), "webhook signing secret (whsec_…)")):
        secret_id = f"{prefix}/{suffix}"
        value = _secret_value(clients, secret_id)
        if value is None:
            checks.append(Check(WARN, f"secret {secret_id}", f"created by the first deploy of "
                                f"saas-{config.name}-billing: then put the {what} in it (docs/runbooks/stripe-setup.md)"))
        elif value.strip().startswith(prefixes):
            checks.append(Check(PASS, f"secret {secret_id}", f"holds a {what.split(' (')[0]}"))
        else:
            checks.append(Check(FAIL, f"secret {secret_id}", f"still the generated placeholder: put the {what} in it "
                                                               "(docs/runbooks/stripe-setup.md)"))
    name = config.observability.betterstack_webhook_secret_name
    if name:
        value = _secret_value(clients, name)
        if value is None:
            checks.append(Check(FAIL, f"secret {name}", "missing: create it with the BetterStack SNS webhook URL "
                                                        "before deploying (the alarm topic subscribes to it)"))
        elif not value.strip().startswith("https://"):
            checks.append(Check(FAIL, f"secret {name}", "is not an https:// webhook URL"))
        else:
            checks.append(Check(PASS, f"secret {name}", "BetterStack webhook URL present"))
    return checks


def _pull_granted(policy: dict, role_arn: str) -> bool:
    """Does a repository policy let ``role_arn`` (by ``aws:PrincipalArn``) use every pull action?"""
    for statement in policy.get("Statement", []):
        actions = statement.get("Action", [])
        actions = {actions} if isinstance(actions, str) else set(actions)
        allowed = statement.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn", [])
        allowed = {allowed} if isinstance(allowed, str) else set(allowed)
        if statement.get("Effect") == "Allow" and set(PULL_ACTIONS) <= actions and role_arn in allowed:
            return True
    return False


def check_image_pull_policy(config: EnvConfig, clients: Clients) -> list[Check]:
    """Two accounts, the source side (dev's credentials): each repository lets the other account's
    release roles pull."""
    roles = config.cicd.image_pull_role_arns
    checks = []
    for service in SERVICES:
        repository = config.image_repository(service)
        name = f"image pull policy {repository}"
        try:
            policy = json.loads(clients.ecr.get_repository_policy(repositoryName=repository)["policyText"])
        except ClientError as error:
            if _error_code(error) == "RepositoryNotFoundException":
                checks.append(Check(WARN, name, f"not created yet: deploy {config.stack_id('registry')}"))
                continue
            if _error_code(error) != "RepositoryPolicyNotFoundException":
                raise
            policy = {}
        missing = [arn for arn in roles if not _pull_granted(policy, arn)]
        if missing:
            checks.append(Check(FAIL, name, f"does not let {', '.join(missing)} pull: deploy "
                                            f"{config.stack_id('registry')} (cicd.image_pull_role_arns)"))
        else:
            checks.append(Check(PASS, name, f"pull only, for {', '.join(roles)}"))
    return checks


def check_promotion_source(config: EnvConfig, clients: Clients) -> list[Check]:
    """Two accounts, the promoting side (prod's credentials): the deployed release role is one the source
    environment's configuration lets pull (its repository policy is built from that list)."""
    cicd = config.cicd
    source = load_config(cicd.promote_from, account=cicd.promote_from_account, region=config.region)
    stack = config.stack_id("cicd")
    try:
        outputs = clients.cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except ClientError as error:
        if "does not exist" not in str(error):
            raise
        return [Check(WARN, "image promotion source", f"{stack} not deployed yet (README checklist): then add its "
                                                      f"ReleaseRoleArn to {source.name}'s cicd.image_pull_role_arns")]
    role = next((o["OutputValue"] for o in outputs if o["OutputKey"] == "ReleaseRoleArn"), None)
    if role not in source.cicd.image_pull_role_arns:
        return [Check(FAIL, "image promotion source",
                      f"{source.name}'s repositories in account {cicd.promote_from_account} do not let this release role "
                      f"({role}) pull: add it to {source.name}'s cicd.image_pull_role_arns (stacks/config.py), deploy "
                      f"{source.stack_id('registry')} there and run make preflight ENV={source.name} with its credentials")]
    return [Check(PASS, "image promotion source", f"{role} may pull {source.name}'s images from account "
                                                  f"{cicd.promote_from_account} (by {source.name}'s configuration)")]


def check_promotion(config: EnvConfig, clients: Clients) -> list[Check]:
    """Images crossing accounts: the source's repository policies, the promoting release role."""
    checks = []
    if config.cicd.image_pull_role_arns:
        checks += check_image_pull_policy(config, clients)
    if config.cicd.promote_from_account not in (None, config.account):
        checks += check_promotion_source(config, clients)
    return checks or [Check(PASS, "image promotion", "within this account (the release role's own policy)")]


def required_bootstrap_version(outdir: Path) -> int:
    """The highest bootstrap version any artifact of the synthesized assembly requires."""
    text = (outdir / "manifest.json").read_text()
    versions = [int(v) for v in re.findall(r'"requiresBootstrapStackVersion":\s*(\d+)', text)]
    return max(versions, default=0)


def check_bootstrap(config: EnvConfig, clients: Clients, *, required: int) -> list[Check]:
    name = f"/cdk-bootstrap/{config.cicd.cdk_qualifier}/version"
    try:
        version = int(clients.ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError as error:
        if _error_code(error) != "ParameterNotFound":
            raise
        return [Check(FAIL, "cdk bootstrap", f"not bootstrapped ({name} missing): "
                                             f"npx cdk bootstrap aws://{config.account}/{config.region}")]
    if version < required:
        return [Check(FAIL, "cdk bootstrap", f"version {version} < {required} required: run "
                                             f"npx cdk bootstrap aws://{config.account}/{config.region} again")]
    return [Check(PASS, "cdk bootstrap", f"version {version} >= {required} required")]


def workflow_variables(workflows: Path) -> set[str]:
    """Every GitHub variable the workflows read (``vars.X``; ``format('X_{0}', env)`` as ``X_<env>``)."""
    found = set()
    for path in sorted(workflows.glob("*.yml")):
        for plain, per_env in _WORKFLOW_VARIABLE.findall(path.read_text()):
            found.add(plain or f"{per_env}_<env>")
    return found


def check_github_variables(_config: EnvConfig, _clients: Clients, *, repo: Path = REPO_ROOT) -> list[Check]:
    readme = (repo / "README.md").read_text()
    missing = sorted(name for name in workflow_variables(repo / ".github" / "workflows") if f"`{name}`" not in readme)
    if missing:
        return [Check(FAIL, "github variables documented", f"README does not describe: {', '.join(missing)}")]
    return [Check(PASS, "github variables documented", "every variable the workflows read is in the README checklist")]


def run_checks(config: EnvConfig, clients: Clients, *, outdir: Path, repo: Path = REPO_ROOT) -> list[Check]:
    """Every check; an AWS error in one (e.g. AccessDenied) is that check's FAIL line, the rest still run."""
    steps: list[tuple[str, Callable[[], list[Check]]]] = [
        ("credentials", lambda: check_account(config, clients)),
        ("configuration", lambda: check_configuration(config, clients)),
        ("acm certificate", lambda: check_certificate(config, clients)),
        ("lambda concurrency quota",
         lambda: check_concurrency(config, clients, reserved=reserved_concurrency(outdir))),
        ("ses identities", lambda: check_ses_identities(config, clients)),
        ("ses production access", lambda: check_ses_account(config, clients)),
        ("cost allocation tags", lambda: check_cost_allocation_tags(config, clients)),
        ("secrets", lambda: check_secrets(config, clients)),
        ("image promotion", lambda: check_promotion(config, clients)),
        ("cdk bootstrap", lambda: check_bootstrap(config, clients, required=required_bootstrap_version(outdir))),
        ("github variables documented", lambda: check_github_variables(config, clients, repo=repo)),
    ]
    results = []
    for name, step in steps:
        try:
            results += step()
        except (ClientError, BotoCoreError) as error:
            results.append(Check(FAIL, name, f"could not check: {error}"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__.split("\n")[0])
    parser.add_argument("--env", required=True, help="environment name (dev, prod)")
    parser.add_argument("--account", required=True, help="the AWS account the environment deploys to")
    parser.add_argument("--region", required=True)
    parser.add_argument("--cdk-out", type=Path, default=REPO_ROOT / "cdk.out", help="synthesized assembly")
    args = parser.parse_args(argv)
    if not (args.cdk_out / "manifest.json").exists():
        print(f"error: {args.cdk_out}/manifest.json missing: run make synth first", file=sys.stderr)
        return 2
    config = load_config(args.env, account=args.account, region=args.region)
    checks = run_checks(config, Clients.from_session(boto3.session.Session(region_name=args.region)),
                        outdir=args.cdk_out)
    for check in checks:
        print(check)
    failed = [check for check in checks if check.status == FAIL]
    print(json.dumps({"environment": args.env, "checks": len(checks), "failed": len(failed),
                      "warnings": sum(check.status == WARN for check in checks)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
