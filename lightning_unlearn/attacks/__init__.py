"""Adversarial attacks: the minimal-epsilon PGD-L2 search of AMUN (pixel space, batched)."""

from lightning_unlearn.attacks.pgd_l2 import DEFAULT_EPS_INIT, AttackResult, calibrate_eps_init, calibration_search, eps_from_calibration, pgd_l2_search

__all__ = ["DEFAULT_EPS_INIT", "AttackResult", "calibrate_eps_init", "calibration_search", "eps_from_calibration", "pgd_l2_search"]
