"""What every train/ script's command line shares: its help layout and the extras check."""

from __future__ import annotations

import argparse
import copy
import importlib

#: Packages of requirements-train.txt that the training scripts import (pip name: module).
TRAINING_EXTRAS = {"accelerate": "accelerate", "tensorboard": "tensorboard"}
REQUIREMENTS_FILE = "requirements-train.txt"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks (its example commands) and shows every option's
    default; argparse's own ArgumentDefaultsHelpFormatter skips options without help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and default is not None
            and default is not argparse.SUPPRESS
            and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
            and not (isinstance(action, argparse._StoreTrueAction) and default is False)
        ):
            text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return text

    def _format_action(self, action: argparse.Action) -> str:
        # argparse prints no help column for an option without help text; give it one.
        if action.help is None and action.option_strings:
            action = copy.copy(action)
            action.help = self._get_help_string(action) or None
        return super()._format_action(action)


def missing_training_extras(packages: tuple[str, ...] = tuple(TRAINING_EXTRAS)) -> list[str]:
    """Pip names of the training extras (of ``packages``) that cannot be imported here."""
    missing = []
    for package in packages:
        module = TRAINING_EXTRAS[package]
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


def training_extras_error(packages: tuple[str, ...] = tuple(TRAINING_EXTRAS)) -> str | None:
    """One line naming what to install when training extras are missing, else None."""
    missing = missing_training_extras(packages)
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not installed: training needs the extras in {REQUIREMENTS_FILE}; "
        f"run `pip install -r {REQUIREMENTS_FILE}`"
    )
