"""Multi-label chest X-ray diagnosis: NIH ChestX-ray14 (open) and MIMIC-CXR-JPG (credentialed)."""
