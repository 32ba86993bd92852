"""Change sets: configuration pushed to many devices with a preview, an approval, canary
waves, post-checks and rollback. This package holds the parts with no database:
rendering a change's template per device (``render``), predicting what it does to a
device's config with hier_config (``preview``), and applying a change to one device
with snapshot, checks and rollback (``push``).

Import the module you need: this file imports nothing, so a process that only renders
(or only lists changes, as every CLI command's import does) never loads hier_config."""
