"""The project's Hydra configuration composed with overrides, as ``python -m vardiu_pyro.fit`` would see it."""

from hydra import compose, initialize_config_module


def config(*overrides):
    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        return compose("config", overrides=list(overrides))
