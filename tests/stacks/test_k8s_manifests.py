"""Kubernetes manifests (k8s/): rendered for both environments once, validated like `make synth` does,
and held to the security and availability properties the platform promises."""

from __future__ import annotations

import copy
import json

import boto3
import pytest
from moto import mock_aws

from k8s.chart import PRE_STOP_SECONDS, termination_grace_seconds
from k8s.render import main as render_main
from k8s.render import render
from k8s.validate import Report, load_objects, validate_environment, validate_policy, validate_schema
from k8s.values import UNRELEASED_DIGEST, PlatformValues, ValuesError
from stacks.config import load_config
from stacks.constructs.outputs import parameter_name
from tests.support.checkov import run_checkov

ENVS = ("dev", "prod")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("k8s")
    for env in ENVS:
        render(env, out, PlatformValues.unresolved(load_config(env)))
    return out


@pytest.fixture(scope="module")
def objects(rendered):
    """objects[env][(kind, name)] → the rendered object."""
    return {env: {(o["kind"], o["metadata"]["name"]): o for path in sorted((rendered / env).glob("*.k8s.yaml"))
                  for o in load_objects(path)} for env in ENVS}


def _pod(objects, env, name):
    return objects[env][("Deployment", name)]["spec"]["template"]["spec"]


def test_rendered_into_one_folder_per_environment_cluster_chart_first(rendered):
    for env in ENVS:
        assert sorted(p.name for p in (rendered / env).iterdir()) == ["0000-cluster.k8s.yaml", "0001-app.k8s.yaml"]


@pytest.mark.parametrize("env", ENVS)
def test_schema_strict_for_the_cluster_version_and_policy_pass(rendered, env):
    report = validate_environment(rendered / env)
    assert report.errors == []
    assert report.checked == 21


@pytest.mark.parametrize("env", ENVS)
def test_checkov_kubernetes_checks_all_pass_without_skips(rendered, env):
    report = run_checkov("--directory", str(rendered / env), framework="kubernetes")
    assert report["summary"]["failed"] == 0, [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert report["summary"]["passed"] > 150 and report["summary"]["skipped"] == 0


# --- the gates can fail ---------------------------------------------------------------------------

def _deployment_objects(objects, env):
    return [copy.deepcopy(o) for o in objects[env].values()]


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda c, p: c.pop("livenessProbe"), "no livenessProbe"),
    (lambda c, p: c["resources"].pop("limits"), "resources.limits needs cpu and memory"),
    (lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False), "read-only root"),
    (lambda c, p: c["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "drop ALL"),
    (lambda c, p: c.update(image="public.ecr.aws/x/api:latest"), "ECR image by digest"),
    (lambda c, p: p.pop("topologySpreadConstraints"), "spread over zones"),
    (lambda c, p: p["securityContext"].pop("seccompProfile"), "seccomp RuntimeDefault"),
    (lambda c, p: p.update(automountServiceAccountToken=True), "service-account token"),
])
def test_policy_rejects_a_weakened_deployment(objects, mutate, expected):
    docs = _deployment_objects(objects, "prod")
    api = next(o for o in docs if o["kind"] == "Deployment" and o["metadata"]["name"] == "api")
    pod = api["spec"]["template"]["spec"]
    mutate(pod["containers"][0], pod)
    report = Report()
    validate_policy(docs, report)
    assert any(expected in e for e in report.errors), report.errors


@pytest.mark.parametrize("kind", ["PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"])
def test_policy_requires_a_pdb_hpa_and_network_policy_per_deployment(objects, kind):
    docs = [o for o in _deployment_objects(objects, "dev")
            if not (o["kind"] == kind and o["metadata"]["name"] == "worker")]
    report = Report()
    validate_policy(docs, report)
    assert any(e.startswith("Deployment/app/worker") for e in report.errors), report.errors


def test_schema_gate_rejects_unknown_fields_and_kinds(objects):
    service = copy.deepcopy(objects["dev"][("Service", "api")])
    service["spec"]["portz"] = []
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    report = Report()
    validate_schema([service, unknown], "1.36", report)
    assert len(report.errors) == 2 and "portz" in report.errors[0] and "no Kubernetes 1.36.0 schema" in report.errors[1]


# --- namespace, identity ----------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS)
def test_namespace_enforces_pod_security_restricted(objects, env):
    labels = objects[env][("Namespace", "app")]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.36"


@pytest.mark.parametrize("env", ENVS)
def test_service_accounts_match_the_cluster_stacks_pod_identity_associations(objects, template_json, env):
    associations = {(r["Properties"]["Namespace"], r["Properties"]["ServiceAccount"])
                    for r in template_json[(env, "cluster")]["Resources"].values()
                    if r["Type"] == "AWS::EKS::PodIdentityAssociation"}
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for (kind, _), o in objects[env].items()
                if kind == "ServiceAccount"}
    assert accounts == associations == {("app", "api"), ("app", "worker")}
    for name in ("api", "worker"):
        assert _pod(objects, env, name)["serviceAccountName"] == name


# --- workloads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize(("name", "port"), [("api", 8000), ("worker", 8001)])
def test_probes_on_healthz_and_readyz_of_the_contract_ports(objects, env, name, port):
    container = _pod(objects, env, name)["containers"][0]
    assert container["ports"][0]["containerPort"] == port
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Startup allows a minute before liveness may restart the container.
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 60
    env_vars = {e["name"]: e["value"] for e in container["env"]}
    assert env_vars["PORT" if name == "api" else "HEALTH_PORT"] == str(port)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("name", ["api", "worker"])
def test_grace_period_covers_prestop_drain_and_the_alb_deregistration(objects, env, name):
    config = load_config(env)
    pod = _pod(objects, env, name)
    drain = config.workloads.shutdown_grace_seconds
    assert pod["terminationGracePeriodSeconds"] == termination_grace_seconds(config) == PRE_STOP_SECONDS + drain + 5
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": PRE_STOP_SECONDS}}
    assert objects[env][("ConfigMap", "platform")]["data"]["SHUTDOWN_GRACE_SECONDS"] == str(drain)
    annotations = objects[env][("Ingress", "api")]["metadata"]["annotations"]
    delay = int(annotations["alb.ingress.kubernetes.io/target-group-attributes"].split("=")[1])
    assert delay <= pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("name", ["api", "worker"])
def test_requests_limits_hpa_and_pdb_from_the_typed_config(objects, env, name):
    sizing = getattr(load_config(env).workloads, name)
    resources = _pod(objects, env, name)["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": f"{sizing.cpu_request_millicores}m", "memory": f"{sizing.memory_request_mib}Mi"},
                         "limits": {"cpu": f"{sizing.cpu_limit_millicores}m", "memory": f"{sizing.memory_limit_mib}Mi"}}
    hpa = objects[env][("HorizontalPodAutoscaler", name)]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (sizing.min_replicas, sizing.max_replicas)
    assert hpa["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization",
                                                                      "averageUtilization": sizing.target_cpu_percent}}
    assert objects[env][("PodDisruptionBudget", name)]["spec"]["maxUnavailable"] == 1
    assert objects[env][("Deployment", name)]["spec"]["replicas"] == sizing.min_replicas


def test_prod_keeps_every_zone_served_through_a_disruption():
    config = load_config("prod")
    assert config.workloads.api.min_replicas >= 3 and config.workloads.api.max_unavailable < config.workloads.api.min_replicas


def test_images_are_the_environments_ecr_repositories_by_digest(objects):
    container = _pod(objects, "prod", "api")["containers"][0]
    assert container["image"] == f"111111111111.dkr.ecr.us-east-1.amazonaws.com/saas-prod/api@{UNRELEASED_DIGEST}"


# --- ingress -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS)
def test_ingress_is_https_only_behind_the_waf_with_modern_tls(objects, env):
    config = load_config(env)
    ingress = objects[env][("Ingress", "api")]
    annotations = ingress["metadata"]["annotations"]
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == config.workloads.certificate_arn
    assert annotations["alb.ingress.kubernetes.io/ssl-policy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    assert annotations["alb.ingress.kubernetes.io/wafv2-acl-arn"] == PlatformValues.unresolved(config).web_acl_arn
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/readyz"
    assert "routing.http.drop_invalid_header_fields.enabled=true" in \
        annotations["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert ingress["spec"]["rules"][0]["host"] == config.workloads.api_domain
    ingress_class = objects[env][("IngressClass", "alb")]["spec"]
    assert ingress_class["controller"] == "eks.amazonaws.com/alb"
    params = objects[env][("IngressClassParams", "alb")]["spec"]
    assert params["scheme"] == "internet-facing"
    assert params["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "app"}}


# --- network -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS)
def test_default_deny_and_egress_only_to_dns_postgres_redis_and_vpc_endpoints(objects, env):
    vpc = load_config(env).network.cidr
    assert objects[env][("NetworkPolicy", "default-deny")]["spec"] == {"podSelector": {},
                                                                       "policyTypes": ["Ingress", "Egress"]}
    assert objects[env][("ConfigMap", "amazon-vpc-cni")]["data"] == {"enable-network-policy-controller": "true"}
    for name, port in (("api", 8000), ("worker", 8001)):
        spec = objects[env][("NetworkPolicy", name)]["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == name
        assert spec["ingress"] == [{"from": [{"ipBlock": {"cidr": vpc}}], "ports": [{"port": port, "protocol": "TCP"}]}]
        rules = {(peer["ipBlock"]["cidr"] if peer else "*", p["protocol"], p["port"])
                 for rule in spec["egress"] for peer in rule.get("to", [None]) for p in rule["ports"]}
        assert rules == {("*", "UDP", 53), ("*", "TCP", 53), (vpc, "TCP", 5432), (vpc, "TCP", 6379),
                         (vpc, "TCP", 443), ("169.254.170.23/32", "TCP", 80)}


def test_node_autoscaling_is_graviton_on_demand_and_capped_by_config(objects):
    for env in ENVS:
        cluster = load_config(env).cluster
        pool = objects[env][("NodePool", "graviton")]["spec"]
        requirements = {r["key"]: r["values"] for r in pool["template"]["spec"]["requirements"]}
        assert requirements["kubernetes.io/arch"] == ["arm64"]
        assert requirements["karpenter.sh/capacity-type"] == ["on-demand"]
        assert pool["limits"] == {"cpu": str(cluster.node_pool_max_vcpus), "memory": f"{cluster.node_pool_max_memory_gib}Gi"}
        assert pool["template"]["spec"]["nodeClassRef"]["group"] == "eks.amazonaws.com"


@pytest.mark.parametrize("env", ENVS)
def test_configuration_holds_endpoints_and_tracing_but_no_credentials(objects, env):
    data = objects[env][("ConfigMap", "platform")]["data"]
    assert data["DATABASE_URL"].startswith("postgresql://db-endpoint.") and "@" not in data["DATABASE_URL"]
    assert data["REDIS_URL"].startswith("rediss://") and "@" not in data["REDIS_URL"]
    assert data["OTEL_PROPAGATORS"].startswith("xray") and data["OTEL_PYTHON_DISTRO"] == "aws_distro"
    assert data["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "https://xray.us-east-1.amazonaws.com/v1/traces"
    assert not [k for k in objects[env] if k[0] == "Secret"]


def _container_environment(objects, env, name):
    """What the container's process sees: the ConfigMaps it loads, then its own env entries."""
    (container,) = _pod(objects, env, name)["containers"]
    environment = {}
    for source in container.get("envFrom", []):
        environment.update(objects[env][("ConfigMap", source["configMapRef"]["name"])]["data"])
    environment.update({e["name"]: e["value"] for e in container.get("env", [])})
    return environment


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("service", ["api", "worker"])
def test_rendered_environment_gives_the_services_everything_production_needs(objects, env, service):
    """The services' own settings, built from exactly what the rendered pod gets, end up with a
    database login, a cache AUTH token and the tenant-password key, all read from the secrets the
    pod role may read (stacks/cluster_stack.py) — so the credentials gap cannot silently reopen."""
    from psycopg.conninfo import conninfo_to_dict

    from services.settings import ServiceSettings

    config, values = load_config(env), PlatformValues.unresolved(load_config(env))
    secrets = {values.services_db_secret_arn: json.dumps({"username": "tenant_provisioner_services", "password": "p" * 48}),
               values.cache_auth_secret_arn: "t" * 64,
               values.tenant_password_key_secret_arn: json.dumps({"key": "k" * 64, "version": 1})}
    read = []

    def read_secret(arn):
        read.append(arn)
        return secrets[arn]
    settings = ServiceSettings.from_env(_container_environment(objects, env, service), read_secret=read_secret)
    assert sorted(read) == sorted(secrets)
    login = conninfo_to_dict(settings.database_url)
    assert (login["user"], login["password"], login["sslmode"]) == ("tenant_provisioner_services", "p" * 48, "require")
    assert settings.redis_url.startswith(f"rediss://:{'t' * 64}@")
    assert settings.password_deriver is not None
    assert settings.provisioner_role == config.tenants.provisioner_role
    assert settings.port == 8000 and settings.health_port == 8001
    assert settings.shutdown_grace_seconds == config.workloads.shutdown_grace_seconds
    # The connection budget follows the instance class and the autoscalers' maximums, so a fully
    # scaled-out fleet still fits max_connections (services/settings.py tenant_pool_budget).
    api, worker = config.workloads.api, config.workloads.worker
    assert settings.database_max_connections == config.database.max_connections
    assert (settings.replicas, settings.worker_replicas) == (api.max_replicas, worker.max_replicas)
    pods = (api.max_replicas + worker.max_replicas) * (settings.pool_total + settings.control_pool_size)
    assert pods + config.database.max_connections // 2 + 3 <= config.database.max_connections


# --- release-time values -------------------------------------------------------------------------------

@mock_aws
def test_release_values_come_from_the_stacks_ssm_parameters():
    config = load_config("dev")
    ssm = boto3.client("ssm", region_name="us-east-1")
    published = {"db-endpoint": "db.abc.us-east-1.rds.amazonaws.com", "db-port": "5432", "db-name": "app",
                 "cache-endpoint": "master.cache.use1.cache.amazonaws.com", "cache-port": "6379",
                 "cache-auth-secret-arn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:auth",
                 "services-db-secret-arn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:login",
                 "tenant-password-key-secret-arn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:key",
                 "web-acl-arn": "arn:aws:wafv2:us-east-1:111111111111:regional/webacl/x/1"}
    for key, value in list(published.items())[:-1]:
        ssm.put_parameter(Name=parameter_name("dev", key), Value=value, Type="String")
    digests = {"api": "sha256:" + "a" * 64, "worker": "sha256:" + "b" * 64}
    with pytest.raises(ValuesError, match="/saas/dev/platform/web-acl-arn.*deploy the dev stacks"):
        PlatformValues.from_ssm(config, ssm, digests)
    ssm.put_parameter(Name=parameter_name("dev", "web-acl-arn"), Value=published["web-acl-arn"], Type="String")
    values = PlatformValues.from_ssm(config, ssm, digests)
    assert values.database_url == "postgresql://db.abc.us-east-1.rds.amazonaws.com:5432/app?sslmode=require"
    assert values.web_acl_arn == published["web-acl-arn"] and values.image_digests == digests
    assert (values.services_db_secret_arn, values.tenant_password_key_secret_arn) == (
        published["services-db-secret-arn"], published["tenant-password-key-secret-arn"])


def test_a_malformed_or_missing_digest_is_refused():
    base = PlatformValues.unresolved(load_config("dev"))
    with pytest.raises(ValuesError, match="sha256:<64 hex>"):
        PlatformValues(**{**base.__dict__, "image_digests": {"api": "latest", "worker": UNRELEASED_DIGEST}})
    with pytest.raises(ValuesError, match="no image digest for worker"):
        PlatformValues(**{**base.__dict__, "image_digests": {"api": UNRELEASED_DIGEST}})


def test_render_cli_wants_endpoints_from_the_stacks_for_a_deployable_render(tmp_path, capsys):
    digests = tmp_path / "digests.json"
    digests.write_text("{}")
    assert render_main(["--env", "dev", "--out", str(tmp_path), "--digests", str(digests)]) == 2
    assert "--from-ssm" in capsys.readouterr().err
