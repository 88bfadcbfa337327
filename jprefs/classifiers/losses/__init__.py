"""Reward-model losses, one per file: binary cross-entropy, Bradley-Terry, Plackett-Luce / all-pairs."""

from jprefs.classifiers.losses.binary import binary_loss
from jprefs.classifiers.losses.listwise import all_pairs_loss, plackett_luce_loss
from jprefs.classifiers.losses.pairwise import bradley_terry_loss

__all__ = ["binary_loss", "bradley_terry_loss", "plackett_luce_loss", "all_pairs_loss"]
