"""The evaluate hook on demo chains: CASP metrics beside both baselines, contact maps, and the 3D step (fold
from the predicted distogram: TM-score, lDDT, RMSD per frame and the trajectory as a multi-model PDB)."""

from __future__ import annotations

import gemmi
import torch

from pipelines.protein.config import DataSection, FoldSection, ModelSection
from pipelines.protein.contacts import ContactNet
from pipelines.protein.data import ProteinData, prepare
from pipelines.protein.demo import write_demo
from pipelines.protein.evaluate import evaluate


def test_evaluate_scores_contacts_and_folds_a_test_chain(tmp_path):
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    raw.mkdir(), prepared.mkdir()
    write_demo(raw, 18, seed=1)
    prepare(raw, DataSection(source="demo"), ModelSection(window=4), 1, prepared)
    torch.manual_seed(0)
    net = ContactNet(hidden=16, layers=1, heads=2, channels=8, blocks=1, dropout=0.0)
    result = evaluate(net, ProteinData(prepared, 64, 1), fold=FoldSection(steps=20, chains=1))
    for prefix in ("test", "baseline/separation/test", "baseline/random/test"):
        assert 0.0 <= result.metrics[f"{prefix}/long_L5"] <= 1.0
    assert 0.0 < result.metrics["test/fold_tm"] <= 1.0 and result.metrics["test/fold_rmsd"] > 0
    frames = result.tables["fold_trajectory"]
    ((name, text),) = result.files.items()
    structure = gemmi.read_pdb_string(text)
    assert name.endswith(".pdb") and len(structure) == len(frames) >= 2  # one MODEL per saved frame
    assert any(key.startswith("contacts_") for key in result.figures) and "fold_trajectory" in result.figures
