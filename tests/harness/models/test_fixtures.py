"""Fixtures: the recipes package and its registry, atomic cached builds, deterministic recipes, the
recipes' shared toolkit (save-and-verify, training log, command line), and a plant that is really
there.

Every test builds into a temporary ``CLAIMS_CACHE_DIR``: nothing here touches the user's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.models import fixtures
from harness.measures.directions import load_directions
from harness.errors import ModelLoadError
from harness.interventions import Add
from harness.models.load import load_model
from harness.measures.scores import logit_diff
from tests._support.paths import ROOT

PLANT_SITE = "blocks.4.block_out"
PROMPTS = ["hello there", "the cat sat on", "xyz", "seven and a half", "quiet morning"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One temporary cache for the tests that only read built fixtures (each build costs ~1 s)."""
    return tmp_path_factory.mktemp("claims-cache")


@pytest.fixture(autouse=True)
def cache(shared_cache, monkeypatch) -> Path:
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(shared_cache))
    monkeypatch.delenv("CLAIMS_FIXTURES_DIR", raising=False)
    return shared_cache


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache of this test's own."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(path))
    return path


def write_recipe(root: Path, family: str, body: str) -> Path:
    """A recipe package ``root/family/recipe.py`` (with the ``__init__.py`` files that make ``root``
    a package of recipes); returns the recipe's path."""
    (root / family).mkdir(parents=True, exist_ok=True)
    for init in (root / "__init__.py", root / family / "__init__.py"):
        if not init.exists():
            init.write_text("")
    recipe = root / family / "recipe.py"
    recipe.write_text(textwrap.dedent(body))
    return recipe


TOY_RECIPE = """
    import json
    from pathlib import Path

    SEED = 3
    VARIANTS = {"toy": {"size": 1}, "toy-big": {"size": 2}}

    def build(out_dir, *, seed, size):
        (Path(out_dir) / "config.json").write_text(json.dumps({"seed": seed, "size": size}))
"""


@pytest.fixture
def toy_recipes(tmp_path, monkeypatch) -> Path:
    """A fixtures folder holding one cheap recipe (no model), with its own cache."""
    root = tmp_path / "fixtures"
    write_recipe(root, "toy", TOY_RECIPE)
    monkeypatch.setenv("CLAIMS_FIXTURES_DIR", str(root))
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # an edited recipe is read afresh, not from a .pyc
    return root


def forget(root: Path) -> None:
    """Drop the modules imported from the recipes package at `root`, as a new process would not have them."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(root.resolve()):
            del sys.modules[name]


def config_of(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


# --------------------------------------------------------------------------- registry


def test_available_lists_the_planted_fixture_and_its_null_twin():
    assert {"planted", "planted-null"} <= set(fixtures.available())
    assert fixtures.available() == sorted(fixtures.available())


def test_the_fixtures_dir_is_the_repositorys_fixtures_package():
    root = ROOT / "fixtures"
    assert fixtures.fixtures_dir() == root
    assert fixtures.package().__name__ == "fixtures" and Path(fixtures.package().__file__) == root / "__init__.py"


def test_recipes_and_their_generators_are_modules_of_the_fixtures_package():
    import fixtures as package
    from fixtures.tracer import data, recipe

    assert fixtures.package() is package
    assert fixtures.import_module("tracer.data") is data and recipe.data() is data
    assert fixtures._lookup("tracer")[1] is recipe  # the registry builds with the module tests import
    assert {"planted", "tacgen", "arith", "codegen", "tracer"} <= {
        name.split(".")[1] for name in sys.modules if name.startswith("fixtures.") and name.endswith(".recipe")}


@pytest.mark.parametrize("call", [
    lambda: fixtures.build("plantd"),
    lambda: fixtures.resolve("plantd"),
    lambda: load_model("fixture:plantd"),
], ids=["build", "resolve", "load_model"])
def test_an_unknown_fixture_is_an_error_that_lists_the_available_ones(call):
    with pytest.raises(ModelLoadError, match=r"unknown fixture 'plantd'; available fixtures are "
                                             r"\[.*'planted', 'planted-null'.*\]"):
        call()


@pytest.mark.parametrize("call", [fixtures.available, fixtures.fixtures_dir, lambda: load_model("fixture:planted")],
                         ids=["available", "fixtures_dir", "load_model"])
def test_a_fixtures_dir_that_does_not_exist_is_an_error_that_says_how_to_fix_it(call, tmp_path, monkeypatch):
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("CLAIMS_FIXTURES_DIR", str(missing))
    with pytest.raises(ModelLoadError, match=rf"fixture recipes not found at {missing}; install interp-claims from "
                                             r"a checkout \(`pip install -e .`\) or set CLAIMS_FIXTURES_DIR to "
                                             r"the repository's fixtures/ folder \(the `fixtures` package of "
                                             r"recipes, shipped weights and data lives in the repository; an "
                                             r"installed wheel does not carry it\)"):
        call()


def test_an_installed_harness_without_the_repository_says_the_recipes_are_missing(tmp_path, monkeypatch):
    """A wheel installs ``harness/`` into site-packages with no ``fixtures/`` beside it."""
    installed = tmp_path / "site-packages" / "harness" / "models" / "fixtures.py"
    monkeypatch.setattr(fixtures, "__file__", str(installed))
    with pytest.raises(ModelLoadError, match=rf"fixture recipes not found at {tmp_path / 'site-packages' / 'fixtures'}; "
                                             r"install interp-claims from a checkout .* an installed wheel does not carry it"):
        fixtures.available()


def test_a_folder_that_is_not_a_package_of_recipes_is_an_error_that_says_what_is_missing(tmp_path, monkeypatch):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "recipe.py").write_text(TOY_RECIPE)
    monkeypatch.setenv("CLAIMS_FIXTURES_DIR", str(tmp_path))
    with pytest.raises(ModelLoadError, match=rf"{tmp_path} is not a package of fixture recipes \(it has no "
                                             r"__init__.py\); point CLAIMS_FIXTURES_DIR at the repository's "
                                             r"fixtures/ folder, or give a folder of recipes an __init__.py"):
        fixtures.available()


def test_claims_fixtures_dir_points_at_another_folder_of_recipes(toy_recipes):
    assert fixtures.fixtures_dir() == toy_recipes
    assert fixtures.available() == ["toy", "toy-big"]
    assert config_of(fixtures.build("toy-big")) == {"seed": 3, "size": 2}
    # imported under a name of its own: the repository's package keeps the name `fixtures`
    assert fixtures.package().__name__.startswith("_claims_fixtures_") and sys.modules["fixtures"] is not fixtures.package()


def test_a_recipe_imports_its_neighbours_and_the_toolkit_relatively(toy_recipes):
    (toy_recipes / "toy" / "helpers.py").write_text("SIZE = 7\n")
    write_recipe(toy_recipes, "toy", TOY_RECIPE.replace("import json", "import json\n    from . import helpers\n"
                                                        "    from .. import toolkit  # noqa: F401")
                 .replace('"size": size', '"size": size * helpers.SIZE'))
    (toy_recipes / "toolkit.py").write_text("")
    assert config_of(fixtures.build("toy-big")) == {"seed": 3, "size": 14}


def test_an_editable_install_finds_the_recipes_from_any_folder(tmp_path):
    """Run from outside the clone (where `fixtures` is not on sys.path), the harness still finds the
    clone's recipes, imported as the package `fixtures`."""
    code = ("from harness.models import fixtures; import sys; print(fixtures.available()); "
            "print(fixtures.import_module('tracer.data').__name__, 'fixtures' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("CLAIMS_FIXTURES_DIR", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'tacgen', 'tacgen-null'" in out.stdout and "fixtures.tracer.data True" in out.stdout


# --------------------------------------------------------------------------- builds and the cache


def test_building_twice_returns_the_same_directory_without_rebuilding(own_cache):
    first = fixtures.build("planted")
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    second = fixtures.build("planted")
    assert second == first and first.parent == own_cache / "fixtures"
    assert {p.name: p.stat().st_mtime_ns for p in second.iterdir()} == stamps
    assert [p.name for p in (own_cache / "fixtures").iterdir()] == [first.name]  # no temporary left


def test_a_built_fixture_holds_the_model_its_tokenizer_its_directions_and_its_plant():
    path = fixtures.build("planted")
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "directions.safetensors",
            "plant.json"} <= names
    plant = json.loads((path / "plant.json").read_text())
    assert plant["site"] == PLANT_SITE and plant["tokens"] == ["A", "B"] and plant["plant"] is True
    assert plant["gain"] > 0 and plant["seed"] == 0
    directions = load_directions(path / "directions.safetensors")
    assert set(directions) == {"planted", "null"}
    assert {d.site for d in directions.values()} == {PLANT_SITE}
    assert (directions["planted"].kind, directions["null"].kind) == ("planted", "null")
    # both scaled to the mean residual norm, and orthogonal to each other
    assert directions["planted"].norm == pytest.approx(plant["residual_norm"], rel=1e-5)
    assert abs(float(directions["planted"].vector @ directions["null"].vector)) < 1e-3 * plant["residual_norm"] ** 2


def test_the_null_twin_records_that_nothing_was_planted():
    plant = json.loads((fixtures.build("planted-null") / "plant.json").read_text())
    assert (plant["plant"], plant["gain"]) == (False, 0.0)


def test_builds_with_the_same_seed_give_identical_models_and_another_seed_another_model(tmp_path):
    cached = load_model(str(fixtures.build("planted")))
    again = load_model(str(fixtures.build("planted", seed=0, out=tmp_path / "again")))
    other = load_model(str(fixtures.build("planted", seed=1, out=tmp_path / "other")))
    assert again.fingerprint == cached.fingerprint
    assert other.fingerprint != cached.fingerprint
    assert fixtures.build("planted", seed=1) != fixtures.build("planted")  # the seed is part of the cache key


def test_load_model_builds_a_fixture_and_the_null_twin_is_another_model():
    planted = load_model("fixture:planted")
    null = load_model("fixture:planted-null")
    assert planted.spec == "fixture:planted"
    assert planted.fingerprint == load_model(str(fixtures.resolve("planted"))).fingerprint
    assert null.fingerprint != planted.fingerprint


def test_an_interrupted_build_leaves_no_half_written_fixture(own_cache, monkeypatch):
    def interrupted(out_dir, **kwargs):
        (Path(out_dir) / "config.json").write_text("{}")  # enough to pass for a finished build
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(fixtures._lookup("planted")[1], "build", interrupted)
        with pytest.raises(KeyboardInterrupt):
            fixtures.build("planted")
    assert list((own_cache / "fixtures").iterdir()) == []
    assert (fixtures.build("planted") / "model.safetensors").is_file()  # the next build starts afresh


def test_a_recipe_that_fails_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "fixtures"
    write_recipe(root, "broken", """
        from pathlib import Path
        VARIANTS = {"broken": {}}
        def build(out_dir, *, seed):
            (Path(out_dir) / "config.json").write_text("{}")
            (Path(out_dir) / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("out of memory")
    """)
    monkeypatch.setenv("CLAIMS_FIXTURES_DIR", str(root))
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="out of memory"):
        fixtures.build("broken")
    assert list((tmp_path / "cache" / "fixtures").iterdir()) == []


def test_force_rebuilds_a_built_fixture(toy_recipes):
    path = fixtures.build("toy")
    (path / "stale").write_text("from an earlier build")
    assert fixtures.build("toy") == path and (path / "stale").exists()
    assert fixtures.build("toy", force=True) == path
    assert not (path / "stale").exists() and config_of(path) == {"seed": 3, "size": 1}


def test_an_edited_recipe_never_reuses_the_weights_of_the_old_one(toy_recipes):
    before = fixtures.build("toy")
    recipe = toy_recipes / "toy" / "recipe.py"
    recipe.write_text(recipe.read_text().replace("SEED = 3", "SEED = 4"))
    forget(toy_recipes)  # the next process imports the edited recipe
    after = fixtures.build("toy")
    assert after != before and config_of(after)["seed"] == 4


def test_resolve_prefers_shipped_weights_unless_a_seed_is_asked_for(toy_recipes):
    shipped = toy_recipes / "toy" / "toy"
    shipped.mkdir()
    (shipped / "config.json").write_text(json.dumps({"shipped": True}))
    assert fixtures.resolve("toy") == shipped
    built = fixtures.resolve("toy", seed=5)
    assert built != shipped and config_of(built) == {"seed": 5, "size": 1}
    assert config_of(fixtures.resolve("toy-big")) == {"seed": 3, "size": 2}  # nothing shipped: built


# --------------------------------------------------------------------------- the plant is real


def slope_along(model_name: str, direction: str) -> torch.Tensor:
    """d(logit('A') - logit('B')) / d(alpha) per prompt, alpha * direction added at the plant site."""
    m = load_model(f"fixture:{model_name}")
    d = load_directions(fixtures.resolve(model_name) / "directions.safetensors")[direction].vector
    up, down = (logit_diff(m, PROMPTS, "A", "B", interventions={PLANT_SITE: Add(d, alpha=a)}) for a in (0.25, -0.25))
    return (up - down) / 0.5


def test_the_planted_direction_moves_the_logit_difference_on_the_planted_fixture():
    slopes = slope_along("planted", "planted")
    assert bool((slopes > 2.5).all()), slopes


def test_the_planted_direction_does_almost_nothing_on_the_null_twin():
    slopes = slope_along("planted-null", "planted")
    assert bool((slopes.abs() < 0.25).all()), slopes


def test_the_null_direction_does_almost_nothing_on_the_planted_fixture():
    slopes = slope_along("planted", "null")
    assert bool((slopes.abs() < 0.25).all()), slopes


def test_a_change_to_a_module_beside_the_recipe_is_a_new_cache_entry(toy_recipes):
    from harness.models.fixtures import build

    first = build("toy")
    assert build("toy") == first
    (toy_recipes / "toy" / "helpers.py").write_text("SIZE = 1\n")  # a data generator, say
    second = build("toy")
    assert second != first and config_of(second) == config_of(first)
    (toy_recipes / "toy" / "helpers.py").write_text("SIZE = 2\n")
    assert build("toy") not in (first, second)



def test_a_fixture_name_may_carry_a_training_seed():
    from harness.models.fixtures import parse_name

    assert parse_name("tacgen") == ("tacgen", None)
    assert parse_name("tacgen@seed=12") == ("tacgen", 12)
    for bad in ("tacgen@sed=1", "tacgen@seed=", "tacgen@seed=-1", "tacgen@1"):
        with pytest.raises(ModelLoadError, match=r"the only suffix is a training seed, e.g. 'fixture:tacgen@seed=1'"):
            parse_name(bad)


# --------------------------------------------------------------------------- the recipes' toolkit


def test_a_recipe_builds_from_its_command_line_as_the_registry_builds_it(tmp_path):
    root = ROOT
    out = subprocess.run([sys.executable, "-m", "fixtures.planted.recipe", "--build", str(tmp_path / "p"), "--null"],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert load_model(str(tmp_path / "p")).fingerprint == load_model("fixture:planted-null").fingerprint
    usage = subprocess.run([sys.executable, "-m", "fixtures.tacgen.recipe", "--help"], cwd=root,
                           capture_output=True, text=True, timeout=120).stdout
    for option in ("--write-data", "--build OUT", "--null", "--seed", "--stop-after", "--no-evaluate"):
        assert option in usage, usage


def test_a_generator_whose_source_is_not_the_recorded_one_is_refused():
    from fixtures import toolkit
    from fixtures.arith import data, recipe

    assert toolkit.verified(data, recipe.DATA_SHA256, name="DATA_SHA256") is data
    with pytest.raises(RuntimeError, match=r"arith/data.py has sha256 [0-9a-f]{64} but recipe.py records "
                                           r"DATA_SHA256 = '0+'; set it to the new hash"):
        toolkit.verified(data, "0" * 64, name="DATA_SHA256")


def test_the_training_log_prints_window_means_and_keeps_every_loss(capsys):
    from fixtures import toolkit

    with toolkit.training("toy", steps=5, every=2) as log:
        for step, loss in enumerate([4.0, 2.0, 1.0, 1.0, 0.5]):
            log.step(step, loss)
    printed = [line.split(" rss")[0].rsplit(" ", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == ["step 0 loss 4.0000", "step 2 loss 1.5000", "step 4 loss 0.7500"]
    assert log.losses == [4.0, 2.0, 1.0, 1.0, 0.5] and log.curve(2) == [3.0, 1.0, 0.5]
    assert toolkit.window_means([1.0, 2.0, 4.0], 2) == [1.5, 4.0] and log.mean_last(3) == pytest.approx(2.5 / 3)


def test_save_verified_refuses_a_tokenizer_that_does_not_give_the_trained_ids_back(tmp_path):
    from fixtures import toolkit
    from fixtures.arith import recipe

    model, tokenizer = recipe.new_model(0), recipe.make_tokenizer()
    ids = torch.tensor([recipe.encode("1+2=")])
    reloaded = toolkit.save_verified(model, tokenizer, tmp_path / "ok", inputs={"input_ids": ids},
                                     texts=["1+2="], ids=[recipe.encode("1+2=")])
    assert reloaded.fingerprint == load_model(str(tmp_path / "ok")).fingerprint
    with pytest.raises(RuntimeError, match=r"the saved tokenizer does not give the trained tokenizer's ids back"):
        toolkit.save_verified(model, tokenizer, tmp_path / "bad", inputs={"input_ids": ids}, texts=["1+2="],
                              ids=[recipe.encode("2+1=")])
