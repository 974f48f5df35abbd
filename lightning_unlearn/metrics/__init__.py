"""Membership-inference and unlearning audits: functional core (:mod:`.functional`) and torchmetrics classes."""

from lightning_unlearn.metrics import functional

__all__ = ["functional"]
