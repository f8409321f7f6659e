"""The ``playbooks:`` section of the config: where the playbooks are and what they may do."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PlaybooksSpec(BaseModel):
    """Safe by default: the built-in library, real actions, no shell, secrets from env."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    folder: str | None = None
    """A folder of ``*.yaml`` playbooks; unset: the built-in library of eleven."""
    dry_run: bool = False
    """Record what each action would have done instead of doing it."""
    shell_allow: list[str] = Field(default_factory=list)
    """Executables shell actions may run. Empty (the default) refuses every shell action."""
    secrets_env: str = "SHOPPULSE_WEBHOOK_SECRETS"
    """Environment variable with the HMAC secrets of webhook actions, comma-separated,
    current first (two during a rotation)."""
