"""Khatri-Rao data vectors and streamed normal equations for predictor-based LPV subspace.

Private helpers of :mod:`estimators.impedance.lpv`. The notation follows van Wingerden &
Verhaegen (2009, "Subspace identification of bilinear and LPV systems for open- and
closed-loop data", Automatica 45(2)) as used by the non-causal LPV method of 004 App. A1:

* affine scheduling vector ``mu_k = [1, p_k, p_k^2, ...]`` of ``m`` local models (004:Eq.12),
* predictor input ``z_k = [u_k, y_k]`` (the innovation form of 004:Eq.8-9 written as a
  predictor: ``x_{k+1} = A~(mu_k) x_k + B~(mu_k) z_k`` with ``A~ = A - K C``),
* past data vector of window ``p`` with the Khatri-Rao structure::

      N_k = [ mu_{k-1} (x) z_{k-1} ;
              mu_{k-1} (x) mu_{k-2} (x) z_{k-2} ;
              ... ;
              mu_{k-1} (x) ... (x) mu_{k-p} (x) z_{k-p} ]

  so that ``x_k = K_p N_k`` (up to the truncated term in ``A~^p``) with the LPV
  controllability matrix ``K_p`` whose block for the word ``(i_1, ..., i_j)`` is
  ``A~^(i_1) ... A~^(i_{j-1}) B~^(i_j)``.

The anti-causal part (004:Eq.9) uses the same vector built on the time-reversed row
(future window ``f``), so both share one implementation.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "data_vectors",
    "markov_hankel",
    "n_words",
    "word_index",
]


def n_words(m: int, window: int) -> int:
    """Number of scheduling words of length 1..window: ``m + m^2 + ... + m^window``."""
    return sum(m**j for j in range(1, window + 1))


def data_vectors(mu: np.ndarray, z: np.ndarray, window: int, ks: np.ndarray) -> np.ndarray:
    """Khatri-Rao past data vectors ``N_k`` for every row and the steps ``ks``.

    Parameters
    ----------
    mu : ndarray, shape (R, N, m)
        Scheduling vectors (004:Eq.12).
    z : ndarray, shape (R, N, nz)
        Predictor inputs ``[u, y]``.
    window : int
        Past window ``p`` (samples).
    ks : ndarray of int, shape (K,)
        Time steps with ``ks >= window``.

    Returns
    -------
    ndarray, shape (R, K, nz * n_words(m, window))
        Blocks ordered by word length j = 1..p; inside a block the word
        ``(i_1, ..., i_j)`` (``i_1`` for ``mu_{k-1}``) is lexicographic and ``z`` varies
        fastest (``numpy.kron`` order).
    """
    R = mu.shape[0]
    blocks = []
    prod = np.ones((R, ks.size, 1))
    for j in range(1, window + 1):
        mu_j = mu[:, ks - j, :]  # (R, K, m)
        prod = (prod[:, :, :, None] * mu_j[:, :, None, :]).reshape(R, ks.size, -1)
        zj = z[:, ks - j, :]
        blocks.append((prod[:, :, :, None] * zj[:, :, None, :]).reshape(R, ks.size, -1))
    return np.concatenate(blocks, axis=2)


def word_index(m: int, window: int) -> list[tuple[int, ...]]:
    """The scheduling words in the order of :func:`data_vectors` (without ``z``)."""
    words: list[tuple[int, ...]] = []
    level: list[tuple[int, ...]] = [()]
    for _ in range(window):
        level = [(*w, i) for w in level for i in range(m)]
        words.extend(level)
    return words


def markov_hankel(h: np.ndarray, m: int, window: int, nz: int) -> np.ndarray:
    """The LPV observability-times-controllability matrix ``Gamma K_p`` from ``C K_p``.

    Row ``v`` (a word of length 0..p-1) holds ``C A~^(v_1) ... A~^(v_l) K_p``; its block
    for the column word ``w`` is the Markov coefficient of the concatenated word ``v w``,
    ``h(v w)``, known when ``|v| + |w| <= p`` and truncated to zero beyond (the
    ``A~^p ~ 0`` assumption of predictor-based subspace identification).

    Parameters
    ----------
    h : ndarray, shape (nz * n_words(m, window),)
        Estimated ``C K_p`` in :func:`data_vectors` order.

    Returns
    -------
    ndarray, shape (sum_{l<p} m^l, nz * n_words(m, window))
    """
    words = word_index(m, window)
    pos = {w: i for i, w in enumerate(words)}
    hb = h.reshape(len(words), nz)
    rows = [()] + [w for w in words if len(w) < window]
    out = np.zeros((len(rows), len(words) * nz))
    for r, v in enumerate(rows):
        for c, w in enumerate(words):
            vw = v + w
            if len(vw) <= window:
                out[r, c * nz:(c + 1) * nz] = hb[pos[vw]]
    return out
