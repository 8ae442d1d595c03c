"""Distillation objectives behind one interface (``Objective``)."""

from .base import Objective, Problem
from .diff_instruct import DiffInstruct, DiffInstructLoss, DiffInstructTerms
from .vardiu import VarDiU
from .vardiu_elbo import VarDiUELBO, VarDiUTerms, vardiu_surrogate_terms

__all__ = ["DiffInstruct", "DiffInstructLoss", "DiffInstructTerms", "Objective", "Problem", "VarDiU", "VarDiUELBO", "VarDiUTerms",
           "vardiu_surrogate_terms"]
