"""vardiu-pyro: one-step diffusion distillation with VarDiU, the Variational Diffusive Upper Bound
(arXiv 2508.20646), as a Pyro model/guide pair under ``pyro.infer.SVI``."""

__version__ = "0.1.0"
