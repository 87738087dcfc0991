"""Manifest drift: live cluster objects that differ from what the last release applied.

``python -m k8s.drift build/k8s/<env>`` (``.github/workflows/drift.yml``, through the SSM tunnel as
the environment's drift role): every object of the rendered manifests is read with ``kubectl get``
and every field the manifest sets is compared with the live value. Fields the manifest leaves out
(server defaults, status, other controllers' fields) are not drift; neither is ``spec.replicas`` of
a Deployment an HPA scales, nor ``1000m`` against the server's ``1``. A missing object is. Exit 1
on drift (each difference on its own line), 2 when the check itself could not run.

Not ``kubectl diff``: it is a server-side dry-run apply, which RBAC authorises as a write (patch,
create), and the scheduled job runs without production's reviewers, so it only reads.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from k8s.validate import load_objects

_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<suffix>m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_FACTORS = {None: Decimal(1), "m": Decimal("0.001"),
            **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
            **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))}}
MISSING = "<missing>"

Getter = Callable[[dict], dict | None]   # the live object of a manifest, None when it does not exist


class DriftCheckError(RuntimeError):
    """The live object could not be read (not a "not found"): the check did not run."""


@dataclass(frozen=True)
class Drift:
    object: str       # Kind/namespace/name
    path: str         # dotted field path; "" for a missing object
    desired: object
    live: object

    def __str__(self) -> str:
        if not self.path:
            return f"{self.object}: missing from the cluster"
        return f"{self.object}: {self.path}: release applied {self.desired!r}, live {self.live!r}"


def object_name(obj: dict) -> str:
    meta = obj.get("metadata", {})
    return f"{obj['kind']}/{meta.get('namespace', '-')}/{meta['name']}"


def _quantity(value: object) -> Decimal | None:
    match = _QUANTITY.match(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not match:
        return None
    try:
        return Decimal(match["number"]) * _FACTORS[match["suffix"]]
    except InvalidOperation:
        return None


def _same(desired: object, live: object) -> bool:
    if desired == live:
        return True
    a, b = _quantity(desired), _quantity(live)
    return a is not None and a == b


def _empty(value: object) -> bool:
    return value in ({}, [], None)


def differences(desired: object, live: object, path: str = "") -> Iterator[tuple[str, object, object]]:
    """Every field of ``desired`` whose live value differs (``live`` may hold more fields)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            yield path, desired, live
            return
        for key, value in desired.items():
            where = f"{path}.{key}" if path else key
            if key not in live:
                if not _empty(value):   # the server drops empty values
                    yield where, value, MISSING
            else:
                yield from differences(value, live[key], where)
    elif isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            yield path, desired, live
            return
        if all(isinstance(item, dict) and "name" in item for item in desired + live):
            by_name = {item["name"]: item for item in live}
            for item in desired:
                yield from differences(item, by_name.get(item["name"], MISSING), f"{path}[{item['name']}]")
        else:
            for index, (item, other) in enumerate(zip(desired, live)):
                yield from differences(item, other, f"{path}[{index}]")
    elif not _same(desired, live):
        yield path, desired, live


def _scaled_by_hpa(objects: list[dict]) -> set[str]:
    """Deployments whose replicas an HPA owns (``spec.replicas`` is only the first value)."""
    return {f"Deployment/{hpa['metadata'].get('namespace', '-')}/{hpa['spec']['scaleTargetRef']['name']}"
            for hpa in objects if hpa["kind"] == "HorizontalPodAutoscaler"}


def find_drift(objects: list[dict], get: Getter) -> list[Drift]:
    """Compare each rendered object with its live version."""
    scaled = _scaled_by_hpa(objects)
    found = []
    for obj in objects:
        name = object_name(obj)
        live = get(obj)
        if live is None:
            found.append(Drift(name, "", obj, None))
            continue
        for path, desired, actual in differences(obj, live):
            if name in scaled and path == "spec.replicas":
                continue
            found.append(Drift(name, path, desired, actual))
    return found


def resource(obj: dict) -> str:
    """``kubectl get``'s resource argument: ``Kind`` (core) or ``Kind.version.group``."""
    group, _, version = obj["apiVersion"].rpartition("/")
    return f"{obj['kind']}.{version}.{group}" if group else obj["kind"]


def kubectl_get(obj: dict, *, kubectl: str = "kubectl") -> dict | None:
    """The live object, None when the cluster has no such object."""
    command = [kubectl, "get", resource(obj), obj["metadata"]["name"], "-o", "json"]
    if "namespace" in obj["metadata"]:
        command += ["--namespace", obj["metadata"]["namespace"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        return json.loads(result.stdout)
    if "NotFound" in result.stderr:
        return None
    raise DriftCheckError(f"{' '.join(command)}: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k8s.drift", description=__doc__.split("\n")[0])
    parser.add_argument("manifests", type=Path, help="the rendered manifests the last release applied (a folder)")
    args = parser.parse_args(argv)
    objects = [obj for path in sorted(args.manifests.glob("*.yaml")) for obj in load_objects(path)]
    if not objects:
        print(f"error: no manifests in {args.manifests}", file=sys.stderr)
        return 2
    try:
        found = find_drift(objects, kubectl_get)
    except DriftCheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for drift in found:
        print(drift)
    print(json.dumps({"objects": len(objects), "drifted": len({d.object for d in found}), "differences": len(found)}))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
