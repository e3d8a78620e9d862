"""Objectives that plug into :class:`ophclip.train.engine.Engine`, one per file.

* :mod:`.contrastive`: OphCLIP's hierarchical clip <-> narration and video <-> summary
  contrastive learning, with the silent-video memory bank (``ophclip pretrain``);
* :mod:`.ssl`: DINO/SVT self-distillation of a vision tower (``ophclip ssl``);
* :mod:`.distill`: teacher -> student distillation into a real-time tower (``ophclip distill``).
"""
