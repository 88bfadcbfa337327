"""jprefs rl stage."""
