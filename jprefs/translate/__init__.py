"""jprefs translate stage."""
