"""Plugins: modules that add methods and network kinds without editing the package.

PACKD_PLUGINS names them, comma-separated (`PACKD_PLUGINS=my_lab.low_rank`). packd.methods and
packd.networks import them when they are first imported, so the DAG and every job that reads a
registry see the same entries; a plugin calls packd.methods.register_method and
packd.networks.register_network at its top level. It must be importable in every job (installed,
or on PYTHONPATH). The DAG imports it too, and with it torch when it registers a network.
"""

from __future__ import annotations

import importlib
import os

PLUGINS_VARIABLE = "PACKD_PLUGINS"


def plugin_modules() -> list[str]:
    """The module names in PACKD_PLUGINS, in order."""
    names = os.environ.get(PLUGINS_VARIABLE, "").split(",")
    return [name.strip() for name in names if name.strip()]


def load_plugins() -> None:
    """Import every plugin module (a module already imported, or being imported, is not run
    again, so packd.methods and packd.networks may both call this)."""
    for name in plugin_modules():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is None or not f"{name}.".startswith(f"{error.name}."):
                raise  # the plugin itself imports something missing
            raise ModuleNotFoundError(
                f"{PLUGINS_VARIABLE}: no module {name!r} (is it installed or on PYTHONPATH?)",
                name=error.name,
            ) from error
