"""make preflight: one line per check. moto where it implements the API (STS, SSM, Secrets Manager,
SES v2 identities, ACM certificates); botocore Stubber for what moto lacks (Lambda GetAccountSettings,
SES v2 GetAccount, Cost Explorer ListCostAllocationTags, an ACM renewal in progress)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import boto3
import pytest
from botocore.stub import Stubber
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws

from app import PROJECT_DIR
from stacks.config import ConcurrencyConfig, load_config
from tools import preflight
from tools.preflight import FAIL, PASS, WARN, Clients

REGION = "us-east-1"


@pytest.fixture
def aws():
    with mock_aws():
        account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
        yield account


def _config(account, **changes):
    config = load_config("prod", account=account, region=REGION)
    real = dict(
        limits=dataclasses.replace(config.limits, ops_emails=("ops@acme.io",), notification_sender="limits@acme.io"),
        cost_report=dataclasses.replace(config.cost_report, recipients=("ceo@acme.io",), sender="reports@acme.io"),
        observability=dataclasses.replace(config.observability, alarm_emails=("ops@acme.io",)),
        cicd=dataclasses.replace(config.cicd, github_repository="acme/saas-platform"),
        cluster=dataclasses.replace(config.cluster, admin_role_arns=(f"arn:aws:iam::{account}:role/admin",)),
        workloads=dataclasses.replace(config.workloads, api_domain="api.acme.io",
                                      certificate_arn=f"arn:aws:acm:{REGION}:{account}:certificate/abc"))
    return dataclasses.replace(config, **{**real, **changes})


def _stubbed(service: str, responses: list[tuple[str, dict, dict | None]]):
    client = boto3.client(service, region_name=REGION)
    stubber = Stubber(client)
    for method, response, params in responses:
        stubber.add_response(method, response, params)
    stubber.activate()
    return client, stubber


def _outdir(tmp_path, reserved: dict[str, int], bootstrap: int = 6):
    """A minimal assembly: one stack per environment with the given reserved concurrency."""
    artifacts = {}
    for env, total in reserved.items():
        template = {"Resources": {"Fn": {"Type": "AWS::Lambda::Function",
                                         "Properties": {"ReservedConcurrentExecutions": total}}}}
        (tmp_path / f"saas-{env}-limits.template.json").write_text(json.dumps(template))
        artifacts[f"saas-{env}-limits"] = {"type": "aws:cloudformation:stack", "properties": {
            "templateFile": f"saas-{env}-limits.template.json", "requiresBootstrapStackVersion": bootstrap}}
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    return tmp_path


def _moto(service):
    return boto3.client(service, region_name=REGION)


def _issued_certificate(monkeypatch, domain: str = "api.acme.io", *sans: str) -> str:
    """A certificate moto has issued: moto leaves a requested one PENDING_VALIDATION for
    MOTO_ACM_VALIDATION_WAIT seconds (60), so the wait is set to none."""
    monkeypatch.setattr("moto.settings.ACM_VALIDATION_WAIT", 0)
    arn = _moto("acm").request_certificate(DomainName=domain, ValidationMethod="DNS",
                                           **({"SubjectAlternativeNames": list(sans)} if sans else {}))["CertificateArn"]
    assert _moto("acm").describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "ISSUED"
    return arn


def _with_certificate(config, arn: str, api_domain: str = "api.acme.io"):
    return dataclasses.replace(config, workloads=dataclasses.replace(config.workloads, certificate_arn=arn,
                                                                       api_domain=api_domain))


def test_a_ready_account_passes_every_check(aws, tmp_path, monkeypatch):
    config = _with_certificate(_config(aws), _issued_certificate(monkeypatch, "api.acme.io", "api.dev.acme.io"))
    secrets, ssm = _moto("secretsmanager"), _moto("ssm")
    secrets.create_secret(Name="/saas/prod/platform/stripe/api-key", SecretString="sk_live_abc")
    secrets.create_secret(Name="/saas/prod/platform/stripe/webhook-signing-secret", SecretString="whsec_abc")
    secrets.create_secret(Name="/saas/prod/betterstack-webhook", SecretString="https://uptime.example.io/hook")
    ssm.put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String")
    lambda_, _ = _stubbed("lambda", [("get_account_settings", {"AccountLimit": {"ConcurrentExecutions": 1000}}, {})])
    verified = {"VerifiedForSendingStatus": True, "VerificationStatus": "SUCCESS"}
    sesv2, _ = _stubbed("sesv2", [
        ("get_email_identity", verified, {"EmailIdentity": "limits@acme.io"}),
        ("get_email_identity", verified, {"EmailIdentity": "reports@acme.io"}),
        ("get_account", {"ProductionAccessEnabled": True, "SendingEnabled": True}, {})])
    ce, _ = _stubbed("ce", [("list_cost_allocation_tags", {"CostAllocationTags": [
        {"TagKey": "environment", "Type": "UserDefined", "Status": "Active"},
        {"TagKey": "tenant", "Type": "UserDefined", "Status": "Active"}]}, {"TagKeys": ["environment", "tenant"]})])
    clients = Clients(sts=_moto("sts"), lambda_=lambda_, sesv2=sesv2, cost_explorer=ce, secrets=secrets, ssm=ssm,
                      acm=_moto("acm"))
    checks = preflight.run_checks(config, clients, outdir=_outdir(tmp_path, {"dev": 19, "prod": 19}))
    assert [str(c) for c in checks if c.status != PASS] == []
    assert {c.name for c in checks} >= {"credentials", "configuration", "acm certificate", "lambda concurrency quota",
                                         "ses identity limits@acme.io", "ses production access",
                                         "cost allocation tag tenant", "cdk bootstrap", "github variables documented",
                                         "secret /saas/prod/betterstack-webhook"}


def test_a_new_account_fails_with_what_to_do(aws, tmp_path):
    """Low quota, SES sandbox with an unverified sender, inactive tags, placeholder Stripe key, missing
    BetterStack secret, no bootstrap: every one is its own FAIL line saying what to do."""
    config = _config(aws)
    secrets, ssm, ses = _moto("secretsmanager"), _moto("ssm"), _moto("sesv2")
    secrets.create_secret(Name="/saas/prod/platform/stripe/api-key", SecretString="Xk2generatedplaceholder")
    ses.create_email_identity(EmailIdentity="reports@acme.io")   # created, never verified
    lambda_, _ = _stubbed("lambda", [("get_account_settings", {"AccountLimit": {"ConcurrentExecutions": 50}}, {})])
    ce, _ = _stubbed("ce", [("list_cost_allocation_tags", {"CostAllocationTags": [
        {"TagKey": "tenant", "Type": "UserDefined", "Status": "Inactive"}]}, None)])
    clients = Clients(sts=_moto("sts"), lambda_=lambda_, sesv2=ses, cost_explorer=ce, secrets=secrets, ssm=ssm,
                      acm=_moto("acm"))
    by_name = {c.name: c for c in preflight.check_ses_identities(config, clients)}
    assert by_name["ses identity limits@acme.io"].status == WARN                 # not created yet
    assert by_name["ses identity reports@acme.io"].status == FAIL
    assert "click the link" in by_name["ses identity reports@acme.io"].detail
    sandbox, _ = _stubbed("sesv2", [
        ("get_email_identity", {"VerifiedForSendingStatus": True}, None),
        ("get_email_identity", {"VerifiedForSendingStatus": True}, None),
        ("get_account", {"ProductionAccessEnabled": False, "SendingEnabled": True}, {})])
    checks = preflight.run_checks(config, dataclasses.replace(clients, sesv2=sandbox),
                                  outdir=_outdir(tmp_path, {"dev": 19, "prod": 19}, bootstrap=6))
    failed = {c.name: c.detail for c in checks if c.status == FAIL}
    assert "L-B99A9384" in failed["lambda concurrency quota"] and "50 < 119" in failed["lambda concurrency quota"]
    assert "Request production access" in failed["ses production access"]
    assert "activate" in failed["cost allocation tag tenant"] and "activate" in failed["cost allocation tag environment"]
    assert "placeholder" in failed["secret /saas/prod/platform/stripe/api-key"]
    assert "before deploying" in failed["secret /saas/prod/betterstack-webhook"]
    assert "cdk bootstrap aws://" in failed["cdk bootstrap"]
    assert "does not exist" in failed["acm certificate"]
    warned = {c.name for c in checks if c.status == WARN}
    assert "secret /saas/prod/platform/stripe/webhook-signing-secret" in warned   # the first deploy creates it


def test_wrong_account_and_example_configuration_fail(aws, tmp_path):
    config = load_config("prod", account="999999999999", region=REGION)
    clients = Clients(sts=_moto("sts"), lambda_=None, sesv2=None, cost_explorer=None, secrets=None, ssm=None)
    (account,) = preflight.check_account(config, clients)
    assert account.status == FAIL and aws in account.detail
    (configuration,) = preflight.check_configuration(config, clients)
    assert configuration.status == FAIL and "cicd.github_repository" in configuration.detail


def test_quota_that_fits_one_environment_but_not_both_in_one_account_warns():
    config = load_config("prod")
    lambda_, _ = _stubbed("lambda", [("get_account_settings", {"AccountLimit": {"ConcurrentExecutions": 130}}, {})])
    check, configured = preflight.check_concurrency(config, Clients(None, lambda_, None, None, None, None),
                                                    reserved={"dev": 19, "prod": 19})
    assert check.status == WARN and "138" in check.detail
    assert configured.status == FAIL and "set concurrency.account_quota = 130" in configured.detail


def test_configured_quota_at_or_below_the_accounts_passes():
    config = dataclasses.replace(load_config("prod"), concurrency=ConcurrencyConfig(account_quota=400))
    lambda_, _ = _stubbed("lambda", [("get_account_settings", {"AccountLimit": {"ConcurrentExecutions": 1000}}, {})])
    checks = preflight.check_concurrency(config, Clients(None, lambda_, None, None, None, None), reserved={"prod": 23})
    assert [c.status for c in checks] == [PASS, PASS]


def test_an_aws_error_in_one_check_is_its_fail_line_and_the_rest_still_run(aws, tmp_path):
    lambda_ = boto3.client("lambda", region_name=REGION)
    stubber = Stubber(lambda_)
    stubber.add_client_error("get_account_settings", "AccessDeniedException", "not authorized")
    stubber.activate()
    sesv2 = boto3.client("sesv2", region_name=REGION)
    ses_stub = Stubber(sesv2)
    for method in ("get_email_identity", "get_account"):
        ses_stub.add_client_error(method, "AccessDeniedException", "not authorized")
    ses_stub.activate()
    ce, _ = _stubbed("ce", [("list_cost_allocation_tags", {"CostAllocationTags": []}, None)])
    clients = Clients(sts=_moto("sts"), lambda_=lambda_, sesv2=sesv2, cost_explorer=ce,
                      secrets=_moto("secretsmanager"), ssm=_moto("ssm"), acm=_moto("acm"))
    checks = preflight.run_checks(_config(aws), clients, outdir=_outdir(tmp_path, {"prod": 19}))
    (quota,) = [c for c in checks if c.name == "lambda concurrency quota"]
    assert quota.status == FAIL and "AccessDenied" in quota.detail
    assert any(c.name == "cdk bootstrap" for c in checks)


def test_every_github_variable_the_workflows_read_is_documented():
    variables = preflight.workflow_variables(PROJECT_DIR / ".github" / "workflows")
    assert {"AWS_DEPLOY_ROLE_ARN", "AWS_ACCOUNT_ID", "AWS_REGION", "AWS_DIFF_ROLE_ARN_<env>"} <= variables
    (check,) = preflight.check_github_variables(None, None)
    assert check.status == PASS, check.detail


def test_undocumented_variable_fails(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "x.yml").write_text("run: echo ${{ vars.NEW_THING }}\n")
    (tmp_path / "README.md").write_text("nothing here")
    (check,) = preflight.check_github_variables(None, None, repo=tmp_path)
    assert check.status == FAIL and "NEW_THING" in check.detail


def test_cli_needs_a_synthesized_assembly(tmp_path, capsys):
    assert preflight.main(["--env", "prod", "--account", "123456789012", "--region", REGION,
                           "--cdk-out", str(tmp_path)]) == 2
    assert "make synth" in capsys.readouterr().err


# ---- two accounts: prod's release role may pull dev's images ------------------------------------
DEV_ACCOUNT = "210987654321"


def _release_role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/saas-prod-cicd-ReleaseRole1A2B3C"


def test_one_account_promotion_needs_no_cross_account_check():
    config = load_config("prod")
    (check,) = preflight.check_promotion(config, Clients(None, None, None, None, None, None))
    assert check.status == PASS and "within this account" in check.detail


def test_dev_repository_policies_must_let_prod_s_release_role_pull(aws):
    config = load_config("dev", account=aws, region=REGION)
    role = _release_role("123456789012")
    config = dataclasses.replace(config, cicd=dataclasses.replace(config.cicd, image_pull_role_arns=(role,)))
    ecr = _moto("ecr")
    clients = dataclasses.replace(Clients(None, None, None, None, None, None), ecr=ecr)
    assert {c.status for c in preflight.check_promotion(config, clients)} == {WARN}     # not deployed yet
    for service in ("api", "worker"):
        ecr.create_repository(repositoryName=f"saas-dev/{service}")
    failed = preflight.check_promotion(config, clients)
    assert [c.status for c in failed] == [FAIL, FAIL] and "deploy saas-dev-registry" in failed[0].detail
    pull = {"Version": "2012-10-17", "Statement": [{
        "Sid": "PullByOtherAccountRelease", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        "Condition": {"ArnEquals": {"aws:PrincipalArn": [role]}}}]}
    ecr.set_repository_policy(repositoryName="saas-dev/api", policyText=json.dumps(pull))
    other = {**pull, "Statement": [{**pull["Statement"][0], "Condition": {"ArnEquals": {
        "aws:PrincipalArn": _release_role("999999999999")}}}]}
    ecr.set_repository_policy(repositoryName="saas-dev/worker", policyText=json.dumps(other))
    api, worker = preflight.check_promotion(config, clients)
    assert api.status == PASS and worker.status == FAIL and role in worker.detail


def _cicd_stack(cloudformation, role_arn: str) -> None:
    cloudformation.create_stack(StackName="saas-prod-cicd", TemplateBody=json.dumps({
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"ReleaseRoleArn": {"Value": role_arn}}}))


def test_prod_s_deployed_release_role_must_be_one_dev_lets_pull(aws, monkeypatch):
    config = _config(aws)
    config = dataclasses.replace(config, cicd=dataclasses.replace(config.cicd, promote_from_account=DEV_ACCOUNT))
    cloudformation = _moto("cloudformation")
    clients = dataclasses.replace(Clients(None, None, None, None, None, None), cloudformation=cloudformation)
    (missing,) = preflight.check_promotion(config, clients)
    assert missing.status == WARN and "saas-prod-cicd not deployed" in missing.detail
    role = _release_role(aws)
    _cicd_stack(cloudformation, role)
    (refused,) = preflight.check_promotion(config, clients)
    assert refused.status == FAIL and f"({role})" in refused.detail
    assert "dev's cicd.image_pull_role_arns" in refused.detail and "saas-dev-registry" in refused.detail
    monkeypatch.setattr("stacks.config._PROD_RELEASE_ROLES", (role,))
    (allowed,) = preflight.check_promotion(config, clients)
    assert allowed.status == PASS and DEV_ACCOUNT in allowed.detail


# ---- the API's ACM certificate ----------------------------------------------------------------------
def _acm_only(acm) -> Clients:
    return dataclasses.replace(Clients(None, None, None, None, None, None), acm=acm)


def _imported_certificate(names: tuple[str, ...], valid_for: dt.timedelta) -> str:
    """A self-signed certificate for ``names`` ending ``valid_for`` from now, imported into moto's ACM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=60))
                   .not_valid_after(now + valid_for)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                   .sign(key, hashes.SHA256()))
    return _moto("acm").import_certificate(
        Certificate=certificate.public_bytes(serialization.Encoding.PEM),
        PrivateKey=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()))["CertificateArn"]


@pytest.mark.parametrize(("name", "host", "covered"), [
    ("api.acme.io", "api.acme.io", True), ("API.acme.io.", "api.acme.io", True), ("*.acme.io", "api.acme.io", True),
    ("*.acme.io", "api.dev.acme.io", False), ("*.acme.io", "acme.io", False), ("*.dev.acme.io", "api.dev.acme.io", True),
    ("acme.io", "api.acme.io", False), ("api.acme.io", "api.dev.acme.io", False)])
def test_a_certificate_name_covers_the_same_host_or_one_label_of_a_wildcard(name, host, covered):
    assert preflight.certificate_covers(name, host) is covered


def test_a_requested_certificate_fails_until_issued_then_passes(aws, monkeypatch):
    """moto leaves a requested certificate PENDING_VALIDATION for a while (MOTO_ACM_VALIDATION_WAIT),
    then issues it; both states are checked whichever one moto answers first."""
    acm = _moto("acm")
    arn = acm.request_certificate(DomainName="api.acme.io", ValidationMethod="DNS",
                                  SubjectAlternativeNames=["api.dev.acme.io"])["CertificateArn"]
    config = _with_certificate(_config(aws), arn)
    if acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "PENDING_VALIDATION":
        (pending,) = preflight.check_certificate(config, _acm_only(acm))
        assert pending.status == FAIL and "PENDING_VALIDATION" in pending.detail and "CNAME" in pending.detail
    monkeypatch.setattr("moto.settings.ACM_VALIDATION_WAIT", 0)
    for environment in (config, _with_certificate(config, arn, api_domain="api.dev.acme.io")):
        (issued,) = preflight.check_certificate(environment, _acm_only(acm))
        assert issued.status == PASS and "ISSUED, covers api." in issued.detail and "days)" in issued.detail


@pytest.mark.parametrize(("status", "says"), [
    ("PENDING_VALIDATION", "PENDING_VALIDATION: add the CNAME records"),
    ("EXPIRED", "EXPIRED: request a new certificate"), ("REVOKED", "REVOKED: request a new certificate")])
def test_a_certificate_not_issued_fails_with_what_to_do(status, says):
    """Each state for certain (Stubber): moto's pending state depends on its timing, and moto refuses
    to import an expired certificate (as ACM does) and never revokes one."""
    config = load_config("prod")
    acm, _ = _stubbed("acm", [("describe_certificate", {"Certificate": {
        "DomainName": config.workloads.api_domain, "Status": status, "Type": "AMAZON_ISSUED"}},
        {"CertificateArn": config.workloads.certificate_arn})])
    (check,) = preflight.check_certificate(config, _acm_only(acm))
    assert check.status == FAIL and check.detail.startswith(says)


def test_a_wildcard_covers_prod_s_host_but_not_dev_s(aws, monkeypatch):
    config = _with_certificate(_config(aws), _issued_certificate(monkeypatch, "*.acme.io"))
    (prod,) = preflight.check_certificate(config, _acm_only(_moto("acm")))
    assert prod.status == PASS
    (dev,) = preflight.check_certificate(_with_certificate(config, config.workloads.certificate_arn,
                                                           api_domain="api.dev.acme.io"), _acm_only(_moto("acm")))
    assert dev.status == FAIL and "does not cover api.dev.acme.io (names: *.acme.io)" in dev.detail


def test_a_certificate_of_another_region_or_account_fails_before_any_call(aws):
    config = _config(aws)
    other_region = f"arn:aws:acm:eu-west-1:{aws}:certificate/abc"
    (region,) = preflight.check_certificate(_with_certificate(config, other_region), _acm_only(None))
    assert region.status == FAIL and "is in eu-west-1, the cluster in us-east-1" in region.detail
    example = load_config("prod", account=aws, region=REGION)    # the example ARN names the placeholder account
    (account,) = preflight.check_certificate(example, _acm_only(None))
    assert account.status == FAIL and "account 111111111111" in account.detail
    (malformed,) = preflight.check_certificate(_with_certificate(config, "api.acme.io"), _acm_only(None))
    assert malformed.status == FAIL and "not an ACM certificate ARN" in malformed.detail


def test_a_missing_certificate_fails(aws):
    (check,) = preflight.check_certificate(_config(aws), _acm_only(_moto("acm")))
    assert check.status == FAIL and "does not exist" in check.detail


def test_an_imported_certificate_expiring_within_30_days_warns(aws):
    config = _config(aws)
    soon = _imported_certificate(("api.acme.io",), dt.timedelta(days=10))
    (warning,) = preflight.check_certificate(_with_certificate(config, soon), _acm_only(_moto("acm")))
    assert warning.status == WARN and "(in 9 days)" in warning.detail and "re-import" in warning.detail
    later = _imported_certificate(("*.acme.io", "acme.io"), dt.timedelta(days=31))
    (fine,) = preflight.check_certificate(_with_certificate(config, later), _acm_only(_moto("acm")))
    assert fine.status == PASS and "(in 30 days)" in fine.detail


def test_an_issued_certificate_whose_renewal_stalls_warns_with_the_renewal_status():
    """ACM renews in-use DNS-validated certificates 60 days ahead; moto never renews (Stubber)."""
    config = load_config("prod")
    not_after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=20, hours=1)
    acm, _ = _stubbed("acm", [("describe_certificate", {"Certificate": {
        "DomainName": config.workloads.api_domain, "SubjectAlternativeNames": [config.workloads.api_domain],
        "Status": "ISSUED", "Type": "AMAZON_ISSUED", "NotAfter": not_after,
        "RenewalSummary": {"RenewalStatus": "PENDING_VALIDATION", "DomainValidationOptions": [
            {"DomainName": config.workloads.api_domain, "ValidationStatus": "PENDING_VALIDATION"}],
                           "UpdatedAt": not_after}}}, None)])
    (check,) = preflight.check_certificate(config, _acm_only(acm))
    assert check.status == WARN and "(in 20 days)" in check.detail and "renewal is PENDING_VALIDATION" in check.detail
