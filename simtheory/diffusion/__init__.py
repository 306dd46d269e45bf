"""Text-conditioned diffusion models on synthetic concept images: the paper's concept-space check.

Submodules: :mod:`~simtheory.diffusion.data` (images, captions, tokenizer),
:mod:`~simtheory.diffusion.model` (text encoder, conditional U-Net, ensembles),
:mod:`~simtheory.diffusion.schedule` (cosine DDPM, DDIM), :mod:`~simtheory.diffusion.probe`
(CNN and analytic probes), :mod:`~simtheory.diffusion.train` (runs with checkpoints and resume),
:mod:`~simtheory.diffusion.records` (stored measurements), :mod:`~simtheory.diffusion.analysis`
(concept-space measures, SIM fit, claims), :mod:`~simtheory.diffusion.figures` (Figure 6 analogue).
Setup and conventions: the "Diffusion arm" section of the design notes.
"""
