"""jprefs eval stage."""
