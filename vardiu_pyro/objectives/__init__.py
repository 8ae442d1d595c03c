"""Distillation objectives behind one interface (``Objective``)."""

from .base import Objective, Problem, forget_pyro_params
from .diff_instruct import DiffInstruct, DiffInstructLoss, DiffInstructTerms
from .vardiu import VarDiU
from .vardiu_elbo import VarDiUELBO, VarDiUTerms, vardiu_surrogate_terms

__all__ = ["DiffInstruct", "DiffInstructLoss", "DiffInstructTerms", "Objective", "Problem", "VarDiU", "VarDiUELBO", "VarDiUTerms", "forget_pyro_params",
           "vardiu_surrogate_terms"]
