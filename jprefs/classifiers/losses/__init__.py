"""Reward-model losses, one per file: binary cross-entropy, Bradley-Terry, Plackett-Luce / all-pairs,
and the length-debiasing ones: the in-batch length-correlation penalty and ODIN's two heads."""

from jprefs.classifiers.losses.binary import binary_loss
from jprefs.classifiers.losses.correlation import length_correlation_penalty, pearson
from jprefs.classifiers.losses.listwise import all_pairs_loss, plackett_luce_loss
from jprefs.classifiers.losses.odin import odin_loss
from jprefs.classifiers.losses.pairwise import bradley_terry_loss

__all__ = ["binary_loss", "bradley_terry_loss", "plackett_luce_loss", "all_pairs_loss",
           "length_correlation_penalty", "pearson", "odin_loss"]
