"""The one table of the 14 NIH ChestX-ray14 findings; every medical module reads it from here."""

FINDINGS: tuple[str, ...] = (  # NIH's canonical order (the paper, the README, every CheXNet reimplementation)
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
BOXED_FINDINGS = FINDINGS[:8]  # the eight "ChestX-ray8" findings, the only ones NIH drew boxes for
NO_FINDING = "No Finding"  # NIH's label when none of the 14 applies (not the same as "normal")
