"""OphCLIP: hierarchical, retrieval-augmented vision-language pretraining on ophthalmic surgery video."""

__version__ = "0.1.0"
