"""The public surface: `harness.__all__` names exactly what is meant to be public."""

import importlib
import subprocess
import sys

import harness


def test_every_name_in_all_resolves_to_an_object():
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name


def test_all_lists_each_module_export_that_is_re_exported():
    for name, module in harness._EXPORTS.items():
        assert name in importlib.import_module(module).__all__, f"{module}.__all__ lacks {name}"


def test_unknown_attribute_is_an_attribute_error():
    try:
        harness.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_harness_does_not_import_torch():
    code = "import sys, harness; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
