"""What the manifests need beyond the typed config: values only a deploy knows.

The stacks publish their endpoints and ARNs as SSM parameters (``/saas/<env>/platform/<key>``);
the release pipeline resolves them (``PlatformValues.from_ssm``) and passes the pushed images'
digests. ``make synth`` renders offline with ``PlatformValues.unresolved``: host names under the
reserved ``.invalid`` top-level domain and an all-zero digest, so that a manifest rendered for
validation can never run by accident (no DNS answers ``.invalid``, no registry holds that digest).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from stacks.config import EnvConfig
from stacks.constructs.outputs import parameter_name

SERVICES = ("api", "worker")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
UNRELEASED_DIGEST = "sha256:" + "0" * 64
# SSM keys (stacks/constructs/outputs.py:publish) each value comes from.
_PARAMETERS = {
    "database_host": "db-endpoint", "database_port": "db-port", "database_name": "db-name",
    "cache_host": "cache-endpoint", "cache_port": "cache-port", "cache_auth_secret_arn": "cache-auth-secret-arn",
    "services_db_secret_arn": "services-db-secret-arn",
    "tenant_password_key_secret_arn": "tenant-password-key-secret-arn", "web_acl_arn": "web-acl-arn",
}


class ValuesError(ValueError):
    """A value the manifests need is missing or malformed; the message says which and where from."""


@dataclass(frozen=True, kw_only=True)
class PlatformValues:
    database_host: str
    database_port: str
    database_name: str
    cache_host: str
    cache_port: str
    cache_auth_secret_arn: str
    services_db_secret_arn: str
    tenant_password_key_secret_arn: str
    web_acl_arn: str
    image_digests: Mapping[str, str]

    def __post_init__(self) -> None:
        missing = [s for s in SERVICES if s not in self.image_digests]
        if missing:
            raise ValuesError(f"no image digest for {', '.join(missing)} (expected sha256:<64 hex>)")
        for service, digest in self.image_digests.items():
            if not _DIGEST.match(digest):
                raise ValuesError(f"image digest of {service} must be sha256:<64 hex>, got {digest!r}")

    @classmethod
    def unresolved(cls, config: EnvConfig) -> "PlatformValues":
        """Offline stand-ins (``make synth``): same shape, unmistakably not deployable."""
        def host(key: str) -> str:
            return f"{key}.{config.name}.unresolved.invalid"
        region, account = config.region, config.account

        def secret(name: str) -> str:
            return f"arn:aws:secretsmanager:{region}:{account}:secret:unresolved-{name}"
        return cls(database_host=host("db-endpoint"), database_port="5432",
                   database_name=config.tenants.database_name, cache_host=host("cache-endpoint"),
                   cache_port="6379",
                   cache_auth_secret_arn=secret("cache-auth"), services_db_secret_arn=secret("services-db-login"),
                   tenant_password_key_secret_arn=secret("tenant-password-key"),
                   web_acl_arn=f"arn:aws:wafv2:{region}:{account}:regional/webacl/unresolved/"
                               "00000000-0000-4000-8000-000000000000",
                   image_digests={service: UNRELEASED_DIGEST for service in SERVICES})

    @classmethod
    def from_ssm(cls, config: EnvConfig, ssm_client: Any, image_digests: Mapping[str, str]) -> "PlatformValues":
        """The deployed stacks' values (needs credentials); a missing parameter names its stack."""
        names = {field: parameter_name(config.name, key) for field, key in _PARAMETERS.items()}
        response = ssm_client.get_parameters(Names=sorted(set(names.values())))
        found = {p["Name"]: p["Value"] for p in response.get("Parameters", [])}
        missing = sorted(set(names.values()) - set(found))
        if missing:
            raise ValuesError(f"SSM parameters not found: {', '.join(missing)}: deploy the {config.name} stacks "
                              f"(`cdk deploy`) before rendering manifests for them")
        return cls(**{field: found[name] for field, name in names.items()}, image_digests=dict(image_digests))

    @property
    def database_url(self) -> str:
        """Where, not who: each connection's role and password come from Secrets Manager (Pod Identity)."""
        return (f"postgresql://{self.database_host}:{self.database_port}/{self.database_name}"
                "?sslmode=require")   # as the control plane connects (tenant_provisioner.db)

    @property
    def redis_url(self) -> str:
        return f"rediss://{self.cache_host}:{self.cache_port}/0"


def load_digests(path: Path) -> dict[str, str]:
    """``{"api": "sha256:…", "worker": "sha256:…"}`` as ``make images`` writes it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValuesError(f"{path} not found: run `make images` (it writes the pushed digests there)") from None
    except json.JSONDecodeError as exc:
        raise ValuesError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValuesError(f"{path}: expected an object mapping service to digest")
    return {str(k): str(v) for k, v in data.items()}
