"""Manifest drift (k8s/drift.py): the rendered manifests against live objects as the API server returns
them (defaults added, quantities normalised, replicas moved by the HPA): no drift; a field someone
changed or an object someone deleted: drift, by name and field."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest

from k8s import drift
from k8s.chart import DRIFT_READER
from k8s.drift import Drift, DriftCheckError, find_drift, main, resource
from k8s.render import render
from k8s.validate import load_objects
from k8s.values import PlatformValues
from stacks.config import DRIFT_READERS_GROUP, load_config


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("k8s-drift")
    render("prod", out, PlatformValues.unresolved(load_config("prod")))
    return out / "prod"


@pytest.fixture
def objects(rendered):
    return [obj for path in sorted(rendered.glob("*.yaml")) for obj in load_objects(path)]


def _as_served(obj: dict) -> dict:
    """What `kubectl get -o json` returns for an object applied from ``obj``: server-side additions."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="0c1d", resourceVersion="42", creationTimestamp="2026-11-29T05:00:00Z",
                            annotations={**obj["metadata"].get("annotations", {}), "deployment.kubernetes.io/revision": "7"})
    live["status"] = {"observedGeneration": 7}
    if obj["kind"] == "Deployment":
        live["spec"]["replicas"] = obj["spec"]["replicas"] + 2          # the HPA scaled it
        live["spec"]["strategy"].setdefault("type", "RollingUpdate")
        for container in live["spec"]["template"]["spec"]["containers"]:
            container["terminationMessagePath"] = "/dev/termination-log"
            limits = container["resources"]["limits"]
            limits["cpu"] = {"1000m": "1"}.get(limits["cpu"], limits["cpu"])   # normalised quantities
            limits["memory"] = {"1024Mi": "1Gi"}.get(limits["memory"], limits["memory"])
    return live


def _getter(live: dict[str, dict]):
    return lambda obj: live.get(drift.object_name(obj))


def _served(objects):
    return {drift.object_name(obj): _as_served(obj) for obj in objects}


def test_a_cluster_that_holds_what_the_release_applied_has_no_drift(objects):
    assert find_drift(objects, _getter(_served(objects))) == []


def test_changed_fields_and_a_deleted_object_are_drift_by_name_and_path(objects):
    live = _served(objects)
    pool = live["NodePool/-/graviton"]
    pool["spec"]["limits"]["cpu"] = "64"                                  # someone lifted the cost ceiling
    api = live["Deployment/app/api"]["spec"]["template"]["spec"]["containers"][0]
    api["image"] = api["image"].split("@")[0] + "@sha256:" + "f" * 64      # kubectl set image
    deleted = next(name for name in live if name.startswith("NetworkPolicy/"))
    del live[deleted]
    found = find_drift(objects, _getter(live))
    assert {(d.object, d.path) for d in found} == {
        ("NodePool/-/graviton", "spec.limits.cpu"),
        ("Deployment/app/api", "spec.template.spec.containers[api].image"),
        (deleted, "")}
    assert any("missing from the cluster" in str(d) for d in found)
    assert "release applied '16', live '64'" in str(next(d for d in found if d.object == "NodePool/-/graviton"))


def test_replicas_are_drift_only_where_no_hpa_owns_them(objects):
    without_hpa = [obj for obj in objects if obj["kind"] != "HorizontalPodAutoscaler"]
    found = find_drift(without_hpa, _getter(_served(objects)))
    assert {d.path for d in found} == {"spec.replicas"}


def test_a_removed_env_var_or_label_is_drift(objects):
    live = _served(objects)
    worker = live["Deployment/app/worker"]["spec"]["template"]["spec"]["containers"][0]
    removed = worker["env"].pop()["name"]
    live["Namespace/-/app"]["metadata"]["labels"].pop("pod-security.kubernetes.io/enforce")
    found = {(d.object, d.path) for d in find_drift(objects, _getter(live))}
    assert ("Deployment/app/worker", "spec.template.spec.containers[worker].env") in found   # list length changed
    assert ("Namespace/-/app", "metadata.labels.pod-security.kubernetes.io/enforce") in found
    assert removed


def test_kubectl_resource_names_pin_the_group_and_version():
    assert resource({"apiVersion": "karpenter.sh/v1", "kind": "NodePool"}) == "NodePool.v1.karpenter.sh"
    assert resource({"apiVersion": "v1", "kind": "ConfigMap"}) == "ConfigMap"


def test_kubectl_not_found_is_a_missing_object_and_any_other_error_stops_the_check(monkeypatch):
    answers = iter([subprocess.CompletedProcess([], 1, "", 'Error from server (NotFound): nodepools "x" not found'),
                    subprocess.CompletedProcess([], 1, "", "Error from server (Forbidden): cannot get"),
                    subprocess.CompletedProcess([], 0, json.dumps({"kind": "NodePool"}), "")])
    calls = []
    monkeypatch.setattr(drift.subprocess, "run", lambda command, **_: calls.append(command) or next(answers))
    pool = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "x"}}
    assert drift.kubectl_get(pool) is None
    with pytest.raises(DriftCheckError, match="Forbidden"):
        drift.kubectl_get(pool)
    assert drift.kubectl_get({**pool, "metadata": {"name": "x", "namespace": "app"}}) == {"kind": "NodePool"}
    assert calls[0] == ["kubectl", "get", "NodePool.v1.karpenter.sh", "x", "-o", "json"]
    assert calls[2][-2:] == ["--namespace", "app"]


def test_cli_exits_1_on_drift_and_prints_each_difference(rendered, objects, monkeypatch, capsys):
    live = _served(objects)
    live["NodePool/-/graviton"]["spec"]["limits"]["memory"] = "256Gi"
    monkeypatch.setattr(drift, "kubectl_get", _getter(live))
    assert main([str(rendered)]) == 1
    out = capsys.readouterr().out
    assert "NodePool/-/graviton: spec.limits.memory" in out and '"drifted": 1' in out
    monkeypatch.setattr(drift, "kubectl_get", _getter(_served(objects)))
    assert main([str(rendered)]) == 0


def test_the_drift_role_reads_the_cluster_scoped_objects_and_nothing_else(objects):
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    role = by_kind[("ClusterRole", DRIFT_READER)]
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"get"}
    assert not any("secrets" in rule["resources"] or "*" in rule["resources"] for rule in role["rules"])
    cluster_scoped = {(o["apiVersion"].rpartition("/")[0], o["kind"]) for o in objects
                      if "namespace" not in o["metadata"] and o["kind"] != "Namespace"}
    readable = {(group, resource) for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    plurals = {"IngressClass": "ingressclasses", "IngressClassParams": "ingressclassparams", "NodePool": "nodepools",
               "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}
    assert {kind for _, kind in cluster_scoped} <= set(plurals), "a new cluster-scoped kind: let the drift role read it"
    assert {(group, plurals[kind]) for group, kind in cluster_scoped} <= readable
    binding = by_kind[("ClusterRoleBinding", DRIFT_READER)]
    assert binding["subjects"] == [{"kind": "Group", "name": DRIFT_READERS_GROUP, "apiGroup": "rbac.authorization.k8s.io"}]
    assert binding["roleRef"]["name"] == DRIFT_READER


def test_drift_str_names_object_and_field():
    assert str(Drift("ConfigMap/app/x", "data.A", "1", "2")) == "ConfigMap/app/x: data.A: release applied '1', live '2'"
