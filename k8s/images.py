"""Build and push the API and worker images: the one place the build commands live.

``make images ENV=dev ACCOUNT=… REGION=… IMAGE_TAG=<git sha>`` runs this (the release workflow
too, after ``docker login`` to ECR). One ``docker buildx build`` per service, multi-arch (Graviton
first), pushed with an immutable tag; the pushed digests land in ``build/images/digests.json``,
which ``python -m k8s.render --digests … --from-ssm`` puts into the Deployments.

``--promote <digests.json>`` (prod's release) builds nothing: it copies the source environment's
scanned images (``cicd.promote_from``, in ``cicd.promote_from_account`` when that is another account)
by digest into this environment's repositories with ``docker buildx imagetools create``, then checks
each copy answers under the same digest. ``--registries`` prints the registries to log in to first.
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
    return [["docker", "buildx", "build", "--platform", ",".join(platforms), "--target", service,
             "--tag", f"{registry(config)}/{config.image_repository(service)}:{tag}",
             "--provenance=mode=max", "--sbom=true",
             "--metadata-file", str(out / f"{service}.json"), "--push", "."] for service in SERVICES]


def registry(config: EnvConfig) -> str:
    return f"{config.account}.dkr.ecr.{config.region}.amazonaws.com"


def promotion_source(config: EnvConfig) -> EnvConfig:
    """The environment whose images ``config``'s release copies, in its own account."""
    cicd = config.cicd
    if cicd.promote_from is None:
        raise ValuesError(f"{config.name} promotes nothing (cicd.promote_from is unset): it builds its own images")
    return load_config(cicd.promote_from, account=cicd.promote_from_account or config.account, region=config.region)


def promote_commands(config: EnvConfig, digests: dict[str, str], tag: str) -> list[list[str]]:
    """Per service: copy ``<source repository>@<digest>`` to this environment's repository (tag ``tag``;
    the same manifest, so the same digest), then inspect the copy by that digest (fails if it differs)."""
    source = promotion_source(config)
    missing = sorted(set(SERVICES) - set(digests))
    if missing:
        raise ValuesError(f"no digest for {', '.join(missing)} in the source environment's digests")
    commands = []
    for service in SERVICES:
        target = f"{registry(config)}/{config.image_repository(service)}"
        commands.append(["docker", "buildx", "imagetools", "create", "--tag", f"{target}:{tag}",
                         f"{registry(source)}/{source.image_repository(service)}@{digests[service]}"])
        commands.append(["docker", "buildx", "imagetools", "inspect", f"{target}@{digests[service]}"])
    return commands


def registries(config: EnvConfig) -> list[str]:
    """What the release logs in to: this environment's registry and, when promoting, the source's."""
    found = [registry(config)]
    if config.cicd.promote_from is not None and registry(promotion_source(config)) not in found:
        found.append(registry(promotion_source(config)))
    return found


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
    parser.add_argument("--tag", help="immutable tag, e.g. the commit's SHA (building or promoting)")
    parser.add_argument("--promote", type=Path, metavar="DIGESTS_JSON",
                        help="copy the source environment's images with these digests instead of building")
    parser.add_argument("--registries", action="store_true", help="print the registries to log in to, then exit")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    if args.account == PLACEHOLDER_ACCOUNT:
        print("error: images go to a real account's ECR: pass ACCOUNT=<12-digit id>", file=sys.stderr)
        return 2
    config = load_config(args.env, account=args.account, region=args.region)
    try:
        if args.registries:
            print("\n".join(registries(config)))
            return 0
        if not args.tag:
            parser.error("--tag is required to build or promote")
        if args.promote:
            digests = json.loads(args.promote.read_text())
            commands = promote_commands(config, digests, args.tag)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            commands = build_commands(config, args.tag)
        for command in commands:
            print(" ".join(command), flush=True)
            if not args.dry_run:
                subprocess.run(command, check=True)
        if args.dry_run:
            return 0
        if not args.promote:
            digests = digests_from_metadata()
    except ValuesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "digests.json").write_text(json.dumps(digests, indent=2) + "\n")
    print(f"digests: {OUT / 'digests.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
