"""Publishing to the Hugging Face Hub: datasets and models staged with honest cards.

- :mod:`jprefs.publish.dataset`: Parquet configs and the dataset card;
- :mod:`jprefs.publish.model`: reward model and RL policy folders and their cards;
- :mod:`jprefs.publish.evals`: a ``jprefs eval rm`` report in a model card, only if it is of that model;
- :mod:`jprefs.publish.snippets`: every card's code pinned to the ``--revision`` pushed to;
- :mod:`jprefs.publish.licenses`: the licence derived from every component;
- :mod:`jprefs.publish.preflight`: secrets, pickles and sizes refused before any upload;
- :mod:`jprefs.publish.push`: the upload (only changed files), ``jprefs push``.
"""
