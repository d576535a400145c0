"""The public namespace: ``blockreg`` holds the user-facing names, ``blockreg.reg`` the whole
algorithm API, both imported lazily."""
import importlib

import pytest

import blockreg
import blockreg.reg


@pytest.mark.parametrize("name", sorted(blockreg._EXPORTS))
def test_every_top_level_name_resolves_to_its_module(name):
    module = importlib.import_module(blockreg._EXPORTS[name], "blockreg")
    assert getattr(blockreg, name) is getattr(module, name)


@pytest.mark.parametrize("name", sorted(blockreg.reg._EXPORTS))
def test_every_reg_name_resolves_to_its_module(name):
    module = importlib.import_module(blockreg.reg._EXPORTS[name], "blockreg.reg")
    assert getattr(blockreg.reg, name) is getattr(module, name)


def test_reg_lists_every_public_name_of_its_modules():
    # a module's __all__ is its public API; blockreg.reg must offer all of it (the two functions
    # named like their module are reached through the module)
    for module in ("deformation", "mismatch", "series", "timeseries", "warp"):
        public = set(importlib.import_module(f"blockreg.reg.{module}").__all__) - {module}
        assert public <= set(blockreg.reg.__all__), (module, public - set(blockreg.reg.__all__))


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        blockreg.nope
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        blockreg.reg.nope


def test_subpackages_are_reachable_as_attributes():
    assert blockreg.reg.AffinePenalty is importlib.import_module("blockreg.reg.penalty").AffinePenalty
    assert blockreg.synthetic is importlib.import_module("blockreg.synthetic")


def test_import_blockreg_stays_free_of_the_server_stack():
    from helpers.imports import loaded_after

    assert loaded_after("import blockreg; blockreg.Apertures; blockreg.register; "
                        "blockreg.open_results; blockreg.warp; blockreg.reg.fixed_lambda") == []
