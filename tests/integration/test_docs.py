"""Every Python sample in the README and docs/ runs: a sample that no longer works is a bug.

Settings samples are executed and then checked by mailroom's system checks, so a sample that
names a setting wrongly fails here too; a sample that shows a test function is run as a test.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from django.test import override_settings

from mailroom.checks import check_settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

SAMPLES = [
    pytest.param(code, id=f"{path.name}:{source[: match.start()].count(chr(10)) + 1}")
    for path in DOCUMENTS
    for source in [path.read_text()]
    for match in BLOCK.finditer(source)
    for code in [match.group(1)]
]


def test_the_docs_have_samples() -> None:
    assert len(SAMPLES) >= 4


@pytest.mark.django_db
@pytest.mark.parametrize("code", SAMPLES)
def test_sample_runs(code: str) -> None:
    namespace: dict[str, object] = {"__name__": "docs_sample"}
    exec(compile(code, "<docs sample>", "exec"), namespace)
    # A sample that shows a test is run as one.
    for name, function in namespace.items():
        if name.startswith("test_") and callable(function):
            function()
    mailroom_setting = namespace.get("MAILROOM")
    if isinstance(mailroom_setting, dict):
        overrides: dict[str, object] = {"MAILROOM": mailroom_setting}
        if isinstance(namespace.get("DATABASES"), dict):
            # For the checks that read DATABASES (LISTEN_DATABASE's alias): nothing connects.
            overrides["DATABASES"] = namespace["DATABASES"]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Overriding setting DATABASES")
            with override_settings(**overrides):
                errors = [m for m in check_settings() if m.is_serious()]
        assert errors == [], errors


def test_the_command_reference_names_every_action_and_option() -> None:
    """docs/commands.md keeps up with the command: every action and option is documented."""
    import argparse

    from mailroom.management.commands.mailroom import Command

    reference = (ROOT / "docs" / "commands.md").read_text()
    parser = Command().create_parser("manage.py", "mailroom")
    actions = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in actions.choices.items():
        assert f"`{name}" in reference, name
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in BASE_OPTIONS:
                    assert f"`{option}" in reference, f"{name} {option}"


BASE_OPTIONS = {
    "--version",
    "--verbosity",
    "--settings",
    "--pythonpath",
    "--traceback",
    "--no-color",
    "--force-color",
    "--skip-checks",
}
