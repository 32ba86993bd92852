"""What a change would do to one device's config, predicted with hier_config.

The device's current config (its latest backup, or fetched live) and the change's
rendered commands are read for the device's platform; hier_config's ``future`` is the
config after the commands, and ``config_to_get_to`` from the current config to it is
what really changes (a command the device already has changes nothing). hier_config's
unified diff of the two is what the preview page shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from hier_config import get_hconfig

from app.compliance import hier_platform
from app.compliance.reader import INDENT_WIDTH


@dataclass
class Prediction:
    #: the rendered commands, as they will be sent
    commands: str
    #: what really changes: hier_config's remediation from the current config to the
    #: predicted one (empty: the device has it all already)
    effective: str
    #: the predicted config after the change
    future: str
    #: what differs, current config -> predicted config: ``+``/``-`` lines under the
    #: (unmarked) sections they are in
    diff: str


def _text(config: object, width: int) -> str:
    return "\n".join(
        " " * width * (line.depth() - 1) + line.text
        for line in config.all_children_sorted()  # type: ignore[attr-defined]
    )


def predict(current: str, commands: str, platform: str) -> Prediction:
    """The change's effect on ``current`` (a config) for a device of ``platform``."""
    driver = hier_platform(platform)
    width = INDENT_WIDTH.get(driver, 1)
    running = get_hconfig(driver, current)
    future = running.future(get_hconfig(driver, commands))
    effective = running.config_to_get_to(future)
    diff = "\n".join(running.unified_diff(future))
    return Prediction(
        commands=commands,
        effective=_text(effective, width),
        future=_text(future, width),
        diff=diff,
    )
