"""``jprefs label``: candidates to rank, a local labelling web app, agreement and export (issue #15)."""
