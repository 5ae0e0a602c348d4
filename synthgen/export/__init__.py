"""The export library: WebDataset shards, index.json, dataset card, DICOM/NIfTI copies, verification.

The stage that writes an export is :func:`synthgen.stages.export.export`.
"""
