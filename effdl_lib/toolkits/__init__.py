"""Pieces shared by several chapters: distillation (``distill``), language models
(``lm``), timing (``bench``) and the Dask runner (``grid``)."""
