"""Reproducible studies behind the figures of docs/studies.md (``python -m
refcodec.studies.NAME``): each measures one tool or decision of the codec on
Kodak -- quant_study (what integers cost), qmap_study (quality maps),
context_study (the checkerboard context), rdoq_study (rate-aware rounding),
refine_study (latent refinement), backend_identity (every backend decodes
every stream alike).  The evaluation tool users run is refcodec.eval."""
