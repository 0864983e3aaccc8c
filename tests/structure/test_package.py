"""The top-level package: every advertised name resolves, unknown names fail clearly."""
import subprocess
import sys

import pytest

import automtl


@pytest.mark.parametrize("name", sorted(automtl._EXPORTS))
def test_top_level_export_resolves(name):
    value = getattr(automtl, name)
    assert value is not None
    assert name in dir(automtl)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        automtl.no_such_name  # noqa: B018


def test_cli_help_lists_commands_without_importing_them():
    code = ("import sys; from automtl.__main__ import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "inspect" in out and "demo" in out
    assert out.strip().endswith("False")  # --help stays cheap: no command module (nor torch) imported
