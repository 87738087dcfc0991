"""Render the manifests of one or every environment: ``python -m k8s.render --env dev --out DIR``.

``--unreleased`` (``make synth``) renders offline with stand-in values (k8s/values.py); the
release pipeline passes ``--digests build/images/digests.json --from-ssm`` (needs credentials)
and applies what it wrote: ``<out>/<env>/cluster.k8s.yaml`` first, then ``app.k8s.yaml``.
Exit codes: 0 written, 2 bad input (message says what to fix).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cdk8s

from k8s.chart import build
from k8s.values import PlatformValues, ValuesError, load_digests
from stacks.config import ENVIRONMENTS, load_config


def render(env: str, out: Path, values: PlatformValues, *, account: str | None = None,
           region: str | None = None) -> Path:
    """Write ``out/<env>/{cluster,app}.k8s.yaml``; returns the environment's folder."""
    config = load_config(env, account=account, region=region)
    folder = Path(out) / env
    shutil.rmtree(folder, ignore_errors=True)
    app = cdk8s.App(outdir=str(folder), yaml_output_type=cdk8s.YamlOutputType.FILE_PER_CHART,
                    output_file_extension=".k8s.yaml")
    build(app, config, values)
    app.synth()
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="all", choices=[*ENVIRONMENTS, "all"])
    parser.add_argument("--out", type=Path, default=Path("cdk.out/k8s"))
    parser.add_argument("--account")
    parser.add_argument("--region")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--unreleased", action="store_true", help="offline stand-ins (validation only)")
    source.add_argument("--digests", type=Path, help="JSON {service: sha256:...} written by `make images`")
    parser.add_argument("--from-ssm", action="store_true", help="read endpoints from the deployed stacks' SSM parameters")
    args = parser.parse_args(argv)
    envs = list(ENVIRONMENTS) if args.env == "all" else [args.env]
    try:
        if args.digests and not args.from_ssm:
            raise ValuesError("--digests needs --from-ssm: a deployable render takes its endpoints from the stacks")
        for env in envs:
            config = load_config(env, account=args.account, region=args.region)
            if args.unreleased:
                values = PlatformValues.unresolved(config)
            else:
                import boto3   # only the release path needs AWS
                values = PlatformValues.from_ssm(config, boto3.client("ssm", region_name=config.region),
                                                 load_digests(args.digests))
            print(render(env, args.out, values, account=args.account, region=args.region))
    except ValuesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
