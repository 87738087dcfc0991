"""The API and worker on EKS Auto Mode, as cdk8s charts built from the environment's typed config.

Two charts per environment, applied in this order:

- ``cluster`` (cluster-scoped): the ``app`` namespace (Pod Security ``restricted``), the ALB
  IngressClass of Auto Mode, the Graviton NodePool (capped: the ceiling of node autoscaling), the
  VPC CNI setting that makes Auto Mode enforce NetworkPolicies, and the read-only role of the
  scheduled drift check;
- ``app`` (namespace ``app``): service accounts matching the Pod Identity associations of the
  cluster stack, configuration, Deployments, Service, Ingress, HPAs, PDBs, NetworkPolicies.

Configuration: non-secret endpoints in a ConfigMap rendered at release time from the stacks' SSM
parameters (``k8s/values.py``); every credential stays in Secrets Manager and is read by the
services through their Pod Identity role, so no Kubernetes Secret holds one, a rotation needs no
redeploy, and no CSI driver DaemonSet has to run (see docs/kubernetes.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cdk8s
from cdk8s_plus_36 import k8s
from constructs import Construct

from k8s.values import PlatformValues
from stacks.config import DRIFT_READERS_GROUP, EnvConfig, ServiceConfig

PART_OF = "saas"
RUN_AS = 10001                     # the images' user (Dockerfile)
PRE_STOP_SECONDS = 5               # the ALB stops routing to a terminating pod before it stops accepting
GRACE_MARGIN_SECONDS = 5
INGRESS_CLASS = "alb"
NODE_POOL = "graviton"
ZONE, HOSTNAME = "topology.kubernetes.io/zone", "kubernetes.io/hostname"
POD_IDENTITY_AGENT = "169.254.170.23/32"   # EKS Pod Identity agent (credentials), link-local on every node
TMP_SIZE = "64Mi"
DRIFT_READER = "saas-drift-reader"


def termination_grace_seconds(config: EnvConfig) -> int:
    """preStop pause + the services' own drain (SHUTDOWN_GRACE_SECONDS) + a margin before SIGKILL."""
    return PRE_STOP_SECONDS + config.workloads.shutdown_grace_seconds + GRACE_MARGIN_SECONDS


def labels(service: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": PART_OF}


def image(config: EnvConfig, service: str, digest: str) -> str:
    return f"{config.account}.dkr.ecr.{config.region}.amazonaws.com/{config.image_repository(service)}@{digest}"


@dataclass(frozen=True)
class _Workload:
    name: str                      # Deployment, ServiceAccount, container and label name
    service_account: str
    module: str                    # python -m <module>
    port_name: str
    port: int
    sizing: ServiceConfig


def _workloads(config: EnvConfig) -> tuple[_Workload, _Workload]:
    w, c = config.workloads, config.cluster
    return (_Workload("api", c.api_service_account, "services.api", "http", w.api_port, w.api),
            _Workload("worker", c.worker_service_account, "services.worker", "health", w.worker_health_port, w.worker))


def _custom(scope: Construct, construct_id: str, *, api_version: str, kind: str, name: str,
            spec: dict) -> cdk8s.ApiObject:
    """A cluster-scoped custom resource of EKS Auto Mode (no typed class exists for it)."""
    resource = cdk8s.ApiObject(scope, construct_id, api_version=api_version, kind=kind,
                               metadata=cdk8s.ApiObjectMetadata(name=name))
    resource.add_json_patch(cdk8s.JsonPatch.add("/spec", spec))
    return resource


class ClusterChart(cdk8s.Chart):
    """Cluster-scoped objects the app chart relies on."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig) -> None:
        super().__init__(scope, construct_id, labels={"app.kubernetes.io/part-of": PART_OF})
        namespace = config.cluster.app_namespace
        restricted = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
        k8s.KubeNamespace(self, "Namespace", metadata=k8s.ObjectMeta(name=namespace, labels={
            **restricted, "pod-security.kubernetes.io/enforce-version": f"v{config.cluster.kubernetes_version}"}))
        # Auto Mode's load balancing: the class the Ingress names; internet-facing ALBs only for `app`.
        _custom(self, "IngressClassParams", api_version="eks.amazonaws.com/v1", kind="IngressClassParams",
                name=INGRESS_CLASS, spec={
                            "scheme": "internet-facing",
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                            "certificateARNs": [config.workloads.certificate_arn]})
        k8s.KubeIngressClass(self, "IngressClass", metadata=k8s.ObjectMeta(name=INGRESS_CLASS), spec=k8s.IngressClassSpec(
            controller="eks.amazonaws.com/alb",
            parameters=k8s.IngressClassParametersReference(api_group="eks.amazonaws.com", kind="IngressClassParams",
                                                           name=INGRESS_CLASS)))
        # Node autoscaling: Auto Mode's Karpenter prefers this pool (weight) for every pod; on-demand
        # Graviton only; `limits` is the most it may ever buy, whatever the HPAs ask for.
        cluster = config.cluster
        _custom(self, "GravitonNodePool", api_version="karpenter.sh/v1", kind="NodePool", name=NODE_POOL, spec={
                            "weight": 100,
                            "template": {"spec": {
                                "nodeClassRef": {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"},
                                "requirements": [
                                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]},
                                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                                    {"key": "eks.amazonaws.com/instance-category", "operator": "In",
                                     "values": ["c", "m", "r"]},
                                    {"key": "eks.amazonaws.com/instance-generation", "operator": "Gt", "values": ["6"]},
                                ],
                                "expireAfter": "336h"}},   # nodes are replaced every 14 days: patched AMIs
                            "limits": {"cpu": str(cluster.node_pool_max_vcpus),
                                       "memory": f"{cluster.node_pool_max_memory_gib}Gi"},
                            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                                           "consolidateAfter": "5m"}})
        # The scheduled drift check (k8s/drift.py) reads every object the release applies; its access
        # entry's view policy covers the namespaced ones, this the cluster-scoped rest. Read only.
        k8s.KubeClusterRole(self, "DriftReader", metadata=k8s.ObjectMeta(name=DRIFT_READER), rules=[
            k8s.PolicyRule(api_groups=[group], resources=[resource], verbs=["get"])
            for group, resource in (("networking.k8s.io", "ingressclasses"), ("eks.amazonaws.com", "ingressclassparams"),
                                    ("karpenter.sh", "nodepools"), ("rbac.authorization.k8s.io", "clusterroles"),
                                    ("rbac.authorization.k8s.io", "clusterrolebindings"))])
        k8s.KubeClusterRoleBinding(
            self, "DriftReaders", metadata=k8s.ObjectMeta(name=DRIFT_READER),
            role_ref=k8s.RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=DRIFT_READER),
            subjects=[k8s.Subject(kind="Group", name=DRIFT_READERS_GROUP, api_group="rbac.authorization.k8s.io")])
        # Auto Mode enforces NetworkPolicies only once this is set (EKS user guide, "network policies
        # with EKS Auto Mode"); without it the app chart's default-deny would be silently ignored.
        k8s.KubeConfigMap(self, "VpcCniNetworkPolicy", metadata=k8s.ObjectMeta(
            name="amazon-vpc-cni", namespace="kube-system"), data={"enable-network-policy-controller": "true"})


class AppChart(cdk8s.Chart):
    """Everything in the app namespace."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig, values: PlatformValues) -> None:
        namespace = config.cluster.app_namespace
        super().__init__(scope, construct_id, namespace=namespace, labels={"app.kubernetes.io/part-of": PART_OF})
        self.config = config
        k8s.KubeConfigMap(self, "Platform", metadata=k8s.ObjectMeta(name="platform"), data={
            "DATABASE_URL": values.database_url,
            "REDIS_URL": values.redis_url,
            # Credentials stay in Secrets Manager: the services read these once at start with their
            # Pod Identity role (services/settings.py), which may read exactly these three.
            "DATABASE_SECRET_ARN": values.services_db_secret_arn,
            "CACHE_AUTH_SECRET_ARN": values.cache_auth_secret_arn,
            "TENANT_DB_PASSWORD_KEY_SECRET_ARN": values.tenant_password_key_secret_arn,
            "TENANT_PROVISIONER_ROLE": config.tenants.provisioner_role,   # names the gateway role
            "AWS_REGION": config.region,
            "SHUTDOWN_GRACE_SECONDS": str(config.workloads.shutdown_grace_seconds),
            # The connection budget (docs/request-path.md): the instance class's max_connections shared
            # by every pod the autoscalers may run, so a full scale-out never exhausts the database.
            "DATABASE_MAX_CONNECTIONS": str(config.database.max_connections),
            "SERVICE_REPLICAS": str(config.workloads.api.max_replicas),
            "WORKER_REPLICAS": str(config.workloads.worker.max_replicas),
            # ADOT (the images run `opentelemetry-instrument`): X-Ray ids and propagation, so one request
            # is one trace across the ALB, the API, the worker and the Lambdas (X-Ray active tracing).
            "OTEL_PYTHON_DISTRO": "aws_distro",
            "OTEL_PYTHON_CONFIGURATOR": "aws_configurator",
            "OTEL_PROPAGATORS": "xray,tracecontext,baggage",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"https://xray.{config.region}.amazonaws.com/v1/traces",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_RESOURCE_ATTRIBUTES": f"deployment.environment={config.name},service.namespace={PART_OF}",
        })
        api, worker = _workloads(config)
        for workload in (api, worker):
            k8s.KubeServiceAccount(self, f"{workload.name.capitalize()}ServiceAccount",
                                   metadata=k8s.ObjectMeta(name=workload.service_account),
                                   automount_service_account_token=False)
            self._deployment(workload, values.image_digests[workload.name])
            self._autoscaling(workload)
        self._api_exposure(api, values)
        self._network_policies(api, worker)

    # --- workloads -----------------------------------------------------------------------------

    def _deployment(self, workload: _Workload, digest: str) -> None:
        config, sizing = self.config, workload.sizing
        probe = k8s.HttpGetAction(port=k8s.IntOrString.from_string(workload.port_name), path="/healthz")
        ready = k8s.HttpGetAction(port=k8s.IntOrString.from_string(workload.port_name), path="/readyz")
        env = [k8s.EnvVar(name="PORT" if workload.name == "api" else "HEALTH_PORT", value=str(workload.port)),
               k8s.EnvVar(name="OTEL_SERVICE_NAME", value=workload.name)]
        container = k8s.Container(
            name=workload.name, image=image(config, workload.name, digest), image_pull_policy="Always",
            ports=[k8s.ContainerPort(name=workload.port_name, container_port=workload.port, protocol="TCP")],
            env=env, env_from=[k8s.EnvFromSource(config_map_ref=k8s.ConfigMapEnvSource(name="platform"))],
            resources=k8s.ResourceRequirements(
                requests={"cpu": k8s.Quantity.from_string(f"{sizing.cpu_request_millicores}m"),
                          "memory": k8s.Quantity.from_string(f"{sizing.memory_request_mib}Mi")},
                limits={"cpu": k8s.Quantity.from_string(f"{sizing.cpu_limit_millicores}m"),
                        "memory": k8s.Quantity.from_string(f"{sizing.memory_limit_mib}Mi")}),
            # Startup: up to 60 s to open pools and load tiers; liveness never kills a slow starter.
            startup_probe=k8s.Probe(http_get=probe, period_seconds=2, failure_threshold=30, timeout_seconds=2),
            readiness_probe=k8s.Probe(http_get=ready, period_seconds=5, failure_threshold=2, timeout_seconds=2),
            liveness_probe=k8s.Probe(http_get=probe, period_seconds=10, failure_threshold=3, timeout_seconds=2),
            lifecycle=k8s.Lifecycle(pre_stop=k8s.LifecycleHandler(sleep=k8s.SleepAction(seconds=PRE_STOP_SECONDS))),
            security_context=k8s.SecurityContext(
                run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS, privileged=False,
                allow_privilege_escalation=False, read_only_root_filesystem=True,
                capabilities=k8s.Capabilities(drop=["ALL"]),
                seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault")),
            volume_mounts=[k8s.VolumeMount(name="tmp", mount_path="/tmp")])
        pod_labels = labels(workload.name)
        k8s.KubeDeployment(
            self, f"{workload.name.capitalize()}Deployment",
            metadata=k8s.ObjectMeta(name=workload.name, labels=pod_labels),
            spec=k8s.DeploymentSpec(
                replicas=sizing.min_replicas,
                revision_history_limit=5,
                selector=k8s.LabelSelector(match_labels=pod_labels),
                strategy=k8s.DeploymentStrategy(type="RollingUpdate", rolling_update=k8s.RollingUpdateDeployment(
                    max_surge=k8s.IntOrString.from_string("25%"), max_unavailable=k8s.IntOrString.from_number(0))),
                template=k8s.PodTemplateSpec(
                    metadata=k8s.ObjectMeta(labels=pod_labels),
                    spec=k8s.PodSpec(
                        service_account_name=workload.service_account,
                        automount_service_account_token=False,
                        enable_service_links=False,
                        termination_grace_period_seconds=termination_grace_seconds(config),
                        security_context=k8s.PodSecurityContext(
                            run_as_non_root=True, run_as_user=RUN_AS, run_as_group=RUN_AS, fs_group=RUN_AS,
                            seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault")),
                        topology_spread_constraints=[
                            k8s.TopologySpreadConstraint(max_skew=1, topology_key=ZONE,
                                                         when_unsatisfiable="DoNotSchedule",
                                                         label_selector=k8s.LabelSelector(match_labels=pod_labels)),
                            k8s.TopologySpreadConstraint(max_skew=1, topology_key=HOSTNAME,
                                                         when_unsatisfiable="ScheduleAnyway",
                                                         label_selector=k8s.LabelSelector(match_labels=pod_labels)),
                        ],
                        containers=[container],
                        volumes=[k8s.Volume(name="tmp", empty_dir=k8s.EmptyDirVolumeSource(
                            size_limit=k8s.Quantity.from_string(TMP_SIZE)))]))))

    def _autoscaling(self, workload: _Workload) -> None:
        sizing = workload.sizing
        metrics = [k8s.MetricSpecV2(type="Resource", resource=k8s.ResourceMetricSourceV2(
            name="cpu", target=k8s.MetricTargetV2(type="Utilization", average_utilization=sizing.target_cpu_percent)))]
        rps = self.config.workloads.api_target_requests_per_second
        if workload.name == "api" and rps:
            # Requests per second per pod, from an external metrics adapter serving the ALB's
            # RequestCountPerTarget (only rendered when configured: without an adapter the HPA would stall).
            metrics.append(k8s.MetricSpecV2(type="External", external=k8s.ExternalMetricSourceV2(
                metric=k8s.MetricIdentifierV2(name="alb_request_count_per_target"),
                target=k8s.MetricTargetV2(type="AverageValue", average_value=k8s.Quantity.from_number(rps)))))
        k8s.KubeHorizontalPodAutoscalerV2(
            self, f"{workload.name.capitalize()}Autoscaler", metadata=k8s.ObjectMeta(name=workload.name),
            spec=k8s.HorizontalPodAutoscalerSpecV2(
                scale_target_ref=k8s.CrossVersionObjectReferenceV2(api_version="apps/v1", kind="Deployment",
                                                                    name=workload.name),
                min_replicas=sizing.min_replicas, max_replicas=sizing.max_replicas, metrics=metrics,
                behavior=k8s.HorizontalPodAutoscalerBehaviorV2(scale_down=k8s.HpaScalingRulesV2(
                    stabilization_window_seconds=300,
                    policies=[k8s.HpaScalingPolicyV2(type="Pods", value=1, period_seconds=60)]))))
        k8s.KubePodDisruptionBudget(
            self, f"{workload.name.capitalize()}DisruptionBudget", metadata=k8s.ObjectMeta(name=workload.name),
            spec=k8s.PodDisruptionBudgetSpec(
                max_unavailable=k8s.IntOrString.from_number(sizing.max_unavailable),
                selector=k8s.LabelSelector(match_labels=labels(workload.name))))

    # --- the API's way in --------------------------------------------------------------------

    def _api_exposure(self, api: _Workload, values: PlatformValues) -> None:
        config, workloads = self.config, self.config.workloads
        k8s.KubeService(self, "ApiService", metadata=k8s.ObjectMeta(name=api.name, labels=labels(api.name)),
                        spec=k8s.ServiceSpec(type="ClusterIP", selector=labels(api.name), ports=[k8s.ServicePort(
                            name=api.port_name, port=80, target_port=k8s.IntOrString.from_string(api.port_name),
                            protocol="TCP")]))
        deregistration = workloads.shutdown_grace_seconds + PRE_STOP_SECONDS
        annotations = {
            "alb.ingress.kubernetes.io/load-balancer-name": f"saas-{config.name}-api",
            "alb.ingress.kubernetes.io/target-type": "ip",
            "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
            "alb.ingress.kubernetes.io/ssl-redirect": "443",
            "alb.ingress.kubernetes.io/certificate-arn": workloads.certificate_arn,
            "alb.ingress.kubernetes.io/ssl-policy": workloads.tls_policy,
            "alb.ingress.kubernetes.io/wafv2-acl-arn": values.web_acl_arn,
            "alb.ingress.kubernetes.io/healthcheck-path": "/readyz",
            "alb.ingress.kubernetes.io/healthcheck-port": "traffic-port",
            "alb.ingress.kubernetes.io/success-codes": "200",
            "alb.ingress.kubernetes.io/load-balancer-attributes": ",".join((
                "routing.http.drop_invalid_header_fields.enabled=true",
                "routing.http.x_amzn_tls_version_and_cipher_suite.enabled=true",
                f"deletion_protection.enabled={str(config.database.deletion_protection).lower()}")),
            "alb.ingress.kubernetes.io/target-group-attributes":
                f"deregistration_delay.timeout_seconds={deregistration}",
        }
        backend = k8s.IngressBackend(service=k8s.IngressServiceBackend(
            name=api.name, port=k8s.ServiceBackendPort(name=api.port_name)))
        rule = k8s.IngressRule(host=workloads.api_domain, http=k8s.HttpIngressRuleValue(
            paths=[k8s.HttpIngressPath(path="/", path_type="Prefix", backend=backend)]))
        k8s.KubeIngress(self, "ApiIngress", metadata=k8s.ObjectMeta(name=api.name, annotations=annotations),
                        spec=k8s.IngressSpec(ingress_class_name=INGRESS_CLASS, rules=[rule]))

    # --- network -------------------------------------------------------------------------------

    def _network_policies(self, api: _Workload, worker: _Workload) -> None:
        vpc = self.config.network.cidr
        k8s.KubeNetworkPolicy(self, "DefaultDeny", metadata=k8s.ObjectMeta(name="default-deny"),
                              spec=k8s.NetworkPolicySpec(pod_selector=k8s.LabelSelector(),
                                                         policy_types=["Ingress", "Egress"]))

        def tcp(port: int) -> k8s.NetworkPolicyPort:
            return k8s.NetworkPolicyPort(protocol="TCP", port=k8s.IntOrString.from_number(port))

        in_vpc = [k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=vpc))]
        egress = [
            # DNS: Auto Mode answers on each node (no CoreDNS pods to select), so port 53 to any address.
            k8s.NetworkPolicyEgressRule(ports=[
                k8s.NetworkPolicyPort(protocol=proto, port=k8s.IntOrString.from_number(53)) for proto in ("UDP", "TCP")]),
            # PostgreSQL, Redis and the VPC's interface endpoints (Secrets Manager, STS, EKS Auth, X-Ray,
            # Logs): all inside the VPC; nothing may leave it.
            k8s.NetworkPolicyEgressRule(to=in_vpc, ports=[tcp(5432), tcp(6379), tcp(443)]),
            # Credentials of the Pod Identity role.
            k8s.NetworkPolicyEgressRule(to=[k8s.NetworkPolicyPeer(ip_block=k8s.IpBlock(cidr=POD_IDENTITY_AGENT))],
                                        ports=[tcp(80)]),
        ]
        for workload in (api, worker):
            # In: the ALB (target type ip, from its subnets) to the API; kubelet probes (node IPs) to both.
            k8s.KubeNetworkPolicy(
                self, f"{workload.name.capitalize()}NetworkPolicy", metadata=k8s.ObjectMeta(name=workload.name),
                spec=k8s.NetworkPolicySpec(
                    pod_selector=k8s.LabelSelector(match_labels=labels(workload.name)),
                    policy_types=["Ingress", "Egress"],
                    ingress=[k8s.NetworkPolicyIngressRule(from_=in_vpc, ports=[tcp(workload.port)])],
                    egress=egress))


def build(app: cdk8s.App, config: EnvConfig, values: PlatformValues) -> tuple[ClusterChart, AppChart]:
    """Both charts of ``config``'s environment in ``app``."""
    cluster = ClusterChart(app, "cluster", config=config)
    workloads = AppChart(app, "app", config=config, values=values)
    workloads.add_dependency(cluster)
    return cluster, workloads
