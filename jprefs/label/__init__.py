"""``jprefs label``: a local web app to rank responses, judge A/B pairs, review translations and give live rewards."""
