"""OOD scores computed from saved logits. Convention: higher = more in-distribution."""
from __future__ import annotations

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


SCORES = {"msp": msp, "maxlogit": maxlogit, "energy": energy, "l2norm": logit_norm}


def score(name: str, logits) -> np.ndarray:
    if name not in SCORES:
        raise UserError(f"unknown score {name!r}; choose one of {', '.join(SCORES)}")
    return SCORES[name](logits)
