"""Clinical evaluation: metrics with patient-level intervals, Grad-CAM and attributions."""
