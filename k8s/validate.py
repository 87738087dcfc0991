"""Offline gates on rendered manifests: ``python -m k8s.validate cdk.out/k8s`` (run by ``make synth``).

1. Schema: every object against the Kubernetes OpenAPI schema of the cluster's minor
   (kubernetes-validate, strict: unknown fields are errors). Only the EKS Auto Mode custom
   resources listed in ``CUSTOM_RESOURCES`` have no published schema; they get the structural
   checks below instead, and any other kind without a schema fails.
2. Policy: what the platform promises of every workload, whatever the schema allows: Pod Security
   ``restricted`` fields, probes, requests and limits, images by digest from this account's ECR,
   a PodDisruptionBudget, an HPA and a NetworkPolicy per Deployment, a default-deny policy.

checkov's kubernetes framework runs beside these (Makefile ``k8s-scan``); its skips live as
``checkov.io/skip`` annotations on the one object they concern, each with its reason.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes_validate
import yaml

from stacks.config import load_config

CUSTOM_RESOURCES = {("eks.amazonaws.com/v1", "IngressClassParams"), ("karpenter.sh/v1", "NodePool")}
_DIGEST_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")


@dataclass
class Report:
    checked: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")


def load_objects(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def _name(obj: dict) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace', '-')}/{meta.get('name')}"


def validate_schema(objects: Iterable[dict], kubernetes_version: str, report: Report) -> None:
    version = f"{kubernetes_version}.0"
    for obj in objects:
        report.checked += 1
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_RESOURCES:
            _check_custom_resource(obj, report)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            report.fail(_name(obj), f"schema {version}: {exc.message} at {'/'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            report.fail(_name(obj), f"no Kubernetes {version} schema for {obj.get('apiVersion')} {obj.get('kind')}")


def _check_custom_resource(obj: dict, report: Report) -> None:
    spec, where = obj.get("spec") or {}, _name(obj)
    if obj["kind"] == "NodePool":
        template = spec.get("template", {}).get("spec", {})
        if not template.get("nodeClassRef", {}).get("name"):
            report.fail(where, "NodePool without spec.template.spec.nodeClassRef")
        if not {"cpu", "memory"} <= set(spec.get("limits", {})):
            report.fail(where, "NodePool without cpu and memory limits: node autoscaling would be unbounded")
    elif obj["kind"] == "IngressClassParams":
        if spec.get("scheme") not in ("internet-facing", "internal"):
            report.fail(where, f"IngressClassParams scheme {spec.get('scheme')!r}")
        if not spec.get("certificateARNs"):
            report.fail(where, "IngressClassParams without certificateARNs")


def validate_policy(objects: list[dict], report: Report) -> None:
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    namespaces = {o["metadata"]["name"]: o for o in by_kind.get("Namespace", [])}
    for ns in namespaces.values():
        labels = ns["metadata"].get("labels", {})
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            report.fail(_name(ns), "namespace must enforce Pod Security 'restricted'")
    policies = by_kind.get("NetworkPolicy", [])
    if not any(p["spec"].get("podSelector") in ({}, None) and set(p["spec"].get("policyTypes", [])) ==
               {"Ingress", "Egress"} and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies):
        report.fail("NetworkPolicy", "no default-deny policy (empty podSelector, Ingress+Egress, no rules)")
    for deployment in by_kind.get("Deployment", []):
        _check_deployment(deployment, by_kind, report)
    for ingress in by_kind.get("Ingress", []):
        annotations = ingress["metadata"].get("annotations", {})
        for key in ("certificate-arn", "ssl-policy", "wafv2-acl-arn", "healthcheck-path"):
            if not annotations.get(f"alb.ingress.kubernetes.io/{key}"):
                report.fail(_name(ingress), f"missing alb.ingress.kubernetes.io/{key}")
        if annotations.get("alb.ingress.kubernetes.io/ssl-redirect") != "443":
            report.fail(_name(ingress), "HTTP must redirect to HTTPS (ssl-redirect: '443')")


def _check_deployment(deployment: dict, by_kind: dict[str, list[dict]], report: Report) -> None:
    where, spec = _name(deployment), deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    pod_sc = pod.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True or pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        report.fail(where, "pod securityContext needs runAsNonRoot and seccomp RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        report.fail(where, "pods must not mount a service-account token (Pod Identity needs none)")
    if not pod.get("serviceAccountName") or pod["serviceAccountName"] == "default":
        report.fail(where, "pods must run as their own service account (Pod Identity association)")
    if not any(c.get("topologyKey") == "topology.kubernetes.io/zone" and c.get("whenUnsatisfiable") == "DoNotSchedule"
               for c in pod.get("topologySpreadConstraints", [])):
        report.fail(where, "replicas must be spread over zones (topologySpreadConstraints, DoNotSchedule)")
    if not pod.get("terminationGracePeriodSeconds"):
        report.fail(where, "terminationGracePeriodSeconds must be set to cover the services' drain")
    for container in pod["containers"] + pod.get("initContainers", []):
        cwhere = f"{where}/{container['name']}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in container:
                report.fail(cwhere, f"no {probe}")
        if container.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            report.fail(cwhere, "readiness must probe /readyz")
        if container.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
            report.fail(cwhere, "liveness must probe /healthz")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                report.fail(cwhere, f"resources.{kind} needs cpu and memory")
        sc = container.get("securityContext", {})
        if not (sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
                and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]
                and not sc.get("capabilities", {}).get("add")):
            report.fail(cwhere, "securityContext must be non-root, read-only root, no escalation, drop ALL")
        if not _DIGEST_IMAGE.match(container.get("image", "")):
            report.fail(cwhere, f"image must be an ECR image by digest, got {container.get('image')!r}")

    def selects(obj: dict) -> bool:
        selector = obj["spec"].get("selector", obj["spec"].get("podSelector", {})).get("matchLabels", {})
        return bool(selector) and selector.items() <= pod_labels.items()

    name = deployment["metadata"]["name"]
    if not any(selects(p) for p in by_kind.get("PodDisruptionBudget", [])):
        report.fail(where, "no PodDisruptionBudget selects its pods")
    if not any(h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
               for h in by_kind.get("HorizontalPodAutoscaler", [])):
        report.fail(where, "no HorizontalPodAutoscaler scales it")
    if not any(selects(p) for p in by_kind.get("NetworkPolicy", [])):
        report.fail(where, "no NetworkPolicy selects its pods")


def validate_environment(folder: Path) -> Report:
    """Both gates over ``folder`` (``<out>/<env>``), against that environment's Kubernetes version."""
    config = load_config(Path(folder).name)
    objects = [obj for path in sorted(Path(folder).glob("*.k8s.yaml")) for obj in load_objects(path)]
    report = Report()
    if not objects:
        report.fail(str(folder), "no manifests (*.k8s.yaml): run `python -m k8s.render` first")
        return report
    validate_schema(objects, config.cluster.kubernetes_version, report)
    validate_policy(objects, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate rendered manifests (schema + policy), offline.")
    parser.add_argument("out", type=Path, help="the render output (e.g. cdk.out/k8s), one folder per environment")
    args = parser.parse_args(argv)
    folders = sorted(p for p in args.out.iterdir() if p.is_dir()) if args.out.is_dir() else []
    if not folders:
        print(f"error: no environment folders in {args.out}: run `python -m k8s.render` first", file=sys.stderr)
        return 2
    failed = False
    for folder in folders:
        report = validate_environment(folder)
        status = "ok" if not report.errors else f"{len(report.errors)} error(s)"
        print(f"{folder}: {report.checked} objects checked (Kubernetes schema --strict + policy): {status}")
        for error in report.errors:
            print(f"  {error}")
        failed = failed or bool(report.errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
