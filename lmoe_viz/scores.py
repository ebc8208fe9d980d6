"""OOD scores computed from saved logits, in a registry. Convention: higher = more
in-distribution.

A score is one :class:`Score` entry of :data:`SCORES` (its name, its function of the
logits, its label); every other module (the CLI's choices, the study's rows, the widgets'
menu) asks the registry, so a new score is one function and one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import logsumexp, softmax

from .errors import UserError


def msp(logits) -> np.ndarray:
    """Maximum softmax probability (Hendrycks & Gimpel), the paper's default score."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=1).max(1)


def maxlogit(logits) -> np.ndarray:
    """The largest logit (Hendrycks et al., 2022)."""
    return np.asarray(logits, dtype=np.float64).max(1)


def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T log sum_k exp(z_k / T) (Liu et al., 2020)."""
    z = np.asarray(logits, dtype=np.float64)
    return temperature * logsumexp(z / temperature, axis=1)


def logit_norm(logits) -> np.ndarray:
    """||z||_2, the quantity of Fig. 3 (L_LC shrinks it for OOD inputs, claim 2)."""
    return np.linalg.norm(np.asarray(logits, dtype=np.float64), axis=1)


@dataclass(frozen=True)
class Score:
    name: str
    fn: Callable                # logits (N, K) -> scores (N,), higher = more in-distribution
    label: str                  # in tables and figure axes
    reference: str              # where it comes from


#: the scores, in table order
SCORES = {s.name: s for s in (
    Score("msp", msp, "MSP", "Hendrycks & Gimpel, 2017"),
    Score("maxlogit", maxlogit, "MaxLogit", "Hendrycks et al., 2022"),
    Score("energy", energy, "Energy", "Liu et al., 2020"),
    Score("l2norm", logit_norm, "||z||", "the logit norm of Fig. 3"),
)}


def score(name: str, logits) -> np.ndarray:
    """Score ``logits`` with the registry entry ``name``."""
    if name not in SCORES:
        raise UserError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")
    return SCORES[name].fn(logits)
