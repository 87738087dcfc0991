"""Build and push the API and worker images: the one place the build commands live.

``make images ENV=dev ACCOUNT=… REGION=… IMAGE_TAG=<git sha>`` runs this (the release workflow
too, after ``docker login`` to ECR). One ``docker buildx build`` per service, multi-arch (Graviton
first), pushed with an immutable tag; the pushed digests land in ``build/images/digests.json``,
which ``python -m k8s.render --digests … --from-ssm`` puts into the Deployments.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from k8s.values import SERVICES, ValuesError
from stacks.config import ENVIRONMENTS, PLACEHOLDER_ACCOUNT, EnvConfig, load_config

PLATFORMS = ("linux/arm64", "linux/amd64")
OUT = Path("build/images")


def build_commands(config: EnvConfig, tag: str, out: Path = OUT,
                   platforms: tuple[str, ...] = PLATFORMS) -> list[list[str]]:
    """The ``docker buildx build`` argv of each service (the Dockerfile's targets)."""
    registry = f"{config.account}.dkr.ecr.{config.region}.amazonaws.com"
    return [["docker", "buildx", "build", "--platform", ",".join(platforms), "--target", service,
             "--tag", f"{registry}/{config.image_repository(service)}:{tag}",
             "--provenance=mode=max", "--sbom=true",
             "--metadata-file", str(out / f"{service}.json"), "--push", "."] for service in SERVICES]


def digests_from_metadata(out: Path = OUT) -> dict[str, str]:
    """``{service: digest}`` from the metadata files buildx wrote (``containerimage.digest``)."""
    digests = {}
    for service in SERVICES:
        path = out / f"{service}.json"
        try:
            digests[service] = json.loads(path.read_text())["containerimage.digest"]
        except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
            raise ValuesError(f"{path}: no pushed digest ({exc.__class__.__name__}); did the build of {service} "
                              "finish with --push?") from None
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=list(ENVIRONMENTS))
    parser.add_argument("--account", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--tag", required=True, help="immutable tag, e.g. the commit's SHA")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    if args.account == PLACEHOLDER_ACCOUNT:
        print("error: images go to a real account's ECR: pass ACCOUNT=<12-digit id>", file=sys.stderr)
        return 2
    config = load_config(args.env, account=args.account, region=args.region)
    OUT.mkdir(parents=True, exist_ok=True)
    for command in build_commands(config, args.tag):
        print(" ".join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)
    if not args.dry_run:
        try:
            digests = digests_from_metadata()
        except ValuesError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        (OUT / "digests.json").write_text(json.dumps(digests, indent=2) + "\n")
        print(f"digests: {OUT / 'digests.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
