"""Seeds: one rule for every seed the library derives from a user's seed.

A user gives one integer per replicate (``--seeds 0,1,2``, ``train_classifier(seed=3)``,
``UnlearningRequest(seed=0)``). That seed is used *as is* where it is the primary choice (a
model's initialisation, a forget set's draw, a request's own randomness). Every *other* random
stream that must be independent of it (the data order of a fit, a reference model's seed,
the second pass of a two-phase epoch, the augmentation of the unlearning phase, ...) gets
its seed from :func:`derive_seed`, named by its purpose::

    derive_seed(seed, "data-order")          # the shuffling of a model's training set
    derive_seed(seed, "rmia-reference", r)   # the model seed of RMIA reference r

The rule is a hash, not arithmetic: ``seed + 1`` or ``7919 * seed`` collide across replicates
(the "second stream" of seed 0 is the first stream of seed 1), a hash of the purpose does not.
It is stable across processes, machines and Python versions (SHA-256 of a fixed text, not
Python's randomised ``hash``), so every DDP rank derives the same seed.
"""

from __future__ import annotations

import hashlib

#: Derived seeds lie in ``[0, SEED_BOUND)``: accepted by ``torch.Generator.manual_seed``,
#: ``numpy.random.RandomState`` and Lightning's ``seed_everything`` alike.
SEED_BOUND = 2**31


def derive_seed(base: int, *purpose: str | int) -> int:
    """The seed of the random stream ``purpose`` of the user's seed ``base``.

    ``derive_seed(base, p1, p2, ...) = int(SHA-256("lightning_unlearn/<base>/<p1>/<p2>...")[:8]) mod 2**31``
    (the first 8 bytes of the digest read as a big-endian unsigned integer).

    Args:
        base: the user's seed (any integer, negative included).
        purpose: at least one name or number saying what the stream is for; different
            purposes give independent seeds, the same purpose always the same seed.

    Returns:
        An ``int`` in ``[0, 2**31)``.

    Raises:
        ValueError: no purpose, or a purpose that is neither ``str`` nor ``int``.

    Example:
        >>> derive_seed(0, "data-order") == derive_seed(0, "data-order") != derive_seed(1, "data-order")
        True
        >>> 0 <= derive_seed(7, "rmia-reference", 3) < 2**31
        True
    """
    if not purpose:
        raise ValueError("derive_seed needs a purpose (e.g. 'data-order'): the base seed itself is not a derived seed")
    bad = [p for p in purpose if isinstance(p, bool) or not isinstance(p, (str, int))]
    if bad or isinstance(base, bool) or not isinstance(base, int):
        raise ValueError(f"derive_seed takes an int base and str/int purposes, got base {base!r} and purposes {purpose!r}")
    text = "/".join(["lightning_unlearn", str(int(base)), *(str(p) for p in purpose)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % SEED_BOUND


__all__ = ["SEED_BOUND", "derive_seed"]
