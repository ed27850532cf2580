"""One module per paper: the method, its ``Config`` profiles, its ``CLAIMS`` and its
``measure`` function. Each is explained by the notebook ``notebooks/<SLUG>.py``."""
