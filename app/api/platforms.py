"""The platforms Rookery backs up: each one's profile, and the profile files it skipped."""

from __future__ import annotations

from pydantic import BaseModel

from app import profiles
from app.api.base import bp, requires, responses, spec
from app.models import Role


class PlatformOut(BaseModel):
    device_type: str
    description: str
    config_commands: list[str]
    extra_commands: list[str]
    comment: str
    extends: str | None
    volatile_rules: int
    secret_rules: int
    error_rules: int
    enable: bool
    paging: str | None
    prompt: str | None
    #: ``built-in`` or ``admin`` (from ROOKERY_PLATFORM_PROFILES_DIR, new or changed)
    source: str
    files: list[str]


class SkippedProfileOut(BaseModel):
    path: str
    reason: str


class PlatformsOut(BaseModel):
    platforms: list[PlatformOut]
    #: the profile of every device type that has none of its own
    generic: PlatformOut
    skipped: list[SkippedProfileOut]


@bp.get("/platforms")
@spec.validate(resp=responses(HTTP_200=PlatformsOut), tags=["platforms"])
@requires(Role.VIEWER)
def platforms():
    """The supported platforms (netmiko device types) with their profiles (commands and
    how many volatile, secret and error rules each has), and the profile files skipped."""
    current = profiles.current()
    return {
        "platforms": [current.profiles[name].to_dict() for name in current.names()],
        "generic": current.profiles[profiles.GENERIC].to_dict(),
        "skipped": [{"path": m.source, "reason": m.reason} for m in current.skipped],
    }
