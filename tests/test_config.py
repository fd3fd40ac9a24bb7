import dataclasses

import pytest

from visrep.config import ConfigError, apply_overrides, config_type, from_dict, leaf_keys, to_dict
from visrep.configs import RECIPES, get_recipe, smoke
from visrep.method_configs import SupervisedConfig


def test_overrides_are_typed_and_nested():
    cfg = get_recipe("mae_fmnist")
    new = apply_overrides(
        cfg,
        ["optim.epochs=7", "method.mask_ratio=0.6", "--data.crop_scale", "0.3,1", "run.compile=True",
         "--backbone.pool=token"],
    )  # fmt: skip
    assert new.optim.epochs == 7 and isinstance(new.optim.epochs, int)
    assert new.method.mask_ratio == 0.6
    assert new.data.crop_scale == (0.3, 1.0)
    assert new.run.compile is True and new.backbone.pool == "token"
    assert cfg.optim.epochs != 7  # frozen original untouched


@pytest.mark.parametrize(("text", "value"), [("false", False), ("0", False), ("yes", True)])
def test_booleans_accept_any_case(text, value):
    assert apply_overrides(get_recipe("mae_fmnist"), [f"run.progress={text}"]).run.progress is value
    with pytest.raises(ConfigError):
        apply_overrides(get_recipe("mae_fmnist"), ["run.progress=maybe"])


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as e:
        apply_overrides(get_recipe("mae_fmnist"), ["optim.epoch=3"])
    msg = str(e.value)
    assert "optim.epochs" in msg.splitlines()[0]  # the suggestion
    assert "valid keys:" in msg and "method.mask_ratio: float" in msg


def test_mistyped_value_is_an_error():
    with pytest.raises(ConfigError):
        apply_overrides(get_recipe("mae_fmnist"), ["optim.epochs=three"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(get_recipe("mae_fmnist"), ["optim.epochs"])


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_roundtrips_json_and_has_a_smoke_mode(name):
    cfg = get_recipe(name)
    assert cfg.recipe == name and RECIPES[name].__doc__
    back = from_dict(config_type(cfg), to_dict(cfg, "mae"))
    assert back == cfg
    tiny = smoke(cfg)
    # a supervised run trains on eval.dataset's train split: eval.limit_train, not data.limit
    small = tiny.eval.limit_train if isinstance(cfg.method, SupervisedConfig) else tiny.data.limit
    assert 0 < small <= 500 and tiny.optim.epochs <= 2 and tiny.backbone.depth <= 2
    assert set(leaf_keys(tiny)) == set(leaf_keys(cfg))


def test_unknown_recipe_suggests():
    with pytest.raises(KeyError, match="mae_fmnist"):
        get_recipe("mae_fminst")


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_recipe("mae_fmnist").optim.epochs = 1  # type: ignore[misc]
