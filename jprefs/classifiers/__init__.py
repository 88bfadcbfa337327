"""jprefs classifiers stage."""
