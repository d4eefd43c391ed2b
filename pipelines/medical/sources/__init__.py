"""Readers and writers of the medical sources: NIH ChestX-ray14, MIMIC-CXR-JPG, the demo generator, tar shards."""
