"""The protein plug-in: inter-residue contacts (a distogram) from sequence alone, over PyG residue graphs.

Data: structures from a folder, RCSB (ids, a PISCES list or a Search API query; mmCIF or PDB) or the demo
generator (sources/, demo.py), read with gemmi (structure.py), filtered by the documented rules and checked
with Great Expectations (data.py), split by 40 %-identity MMseqs2 clusters with an alignment leak check
(clusters.py), stored as PyG datasets (dataset.py). Model: contacts.ContactNet (TransformerConv over the
sequence graph, dilated 2-D convolutions over the pair map); module.py trains it, evaluate.py scores it the
CASP way, pyfunc.py serves it (contacts, map, optional Cα trace folded from the distogram: folding.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from components.project import Metric, MonitoringModule, Objective, Paths, PyfuncSpec
from pipelines.protein.config import ProteinSection

OPTIMISER_KEYS = ("lr", "weight_decay")


class Protein(MonitoringModule):
    name = "protein"
    section = ProteinSection
    # ---- monitoring: sequence composition, encoder embedding, contact density; replay streams
    monitoring_module = "pipelines.protein.monitoring"
    replay_streams = ("unshifted", "fragments")
    # select on validation loss (smooth, every pair counts); promote on the test chains' long-range top-L/5
    # precision, re-scored for challenger and champion on the same chains
    objective = Objective(select=Metric("val/loss", "minimize"), gate=Metric("test/long_L5", "maximize"))
    description = (
        "Inter-residue distances (a 37-bin Cβ distogram) and contacts (< 8 Å) from a single protein sequence: "
        "TransformerConv message passing over the residue graph (PyTorch Geometric), then a dilated 2-D "
        "convolutional pair head. Trained on PDB chains split by 40 %-identity MMseqs2 clusters (no test chain "
        "aligns at >= 40 % with a training chain). Metric: precision of the top L/5 long-range (|i-j| >= 24) "
        "contacts on the test chains. Optionally folds a Cα trace from the predicted distogram."
    )
    limitations = (
        "No multiple sequence alignment and no protein language model: single-sequence contact prediction from "
        "a few hundred chains is far below MSA-based methods. Chains of 30-400 residues; one chain at a time "
        "(no complexes). The folded trace is Cα only, from distances alone (chirality from the energy). The "
        "demo profile's model is trained on synthetic structures and says nothing about real proteins."
    )

    # ---- data -------------------------------------------------------------------------------------

    def pull(self, cfg, out: Path) -> list[Path]:
        """Structures into raw/: the demo generator, a folder's files, or RCSB entries; raw/heldout/ the test_dir."""
        from components.fetch import fetch
        from pipelines.protein.dataset import structure_files

        data = cfg.project.data
        if data.source == "demo":
            from pipelines.protein.demo import write_demo

            files = write_demo(out, data.demo_entries, cfg.seed)
        elif data.source == "files":
            files = [fetch(str(f), out / f.name) for f in structure_files(Path(data.structures_dir))]
        elif data.source == "afdb":
            from pipelines.protein.data import write_kept
            from pipelines.protein.sources.afdb import pull_models

            models = pull_models(data.accessions, out / "afdb", mirror=data.afdb_mirror, min_mean_plddt=data.min_plddt)
            files = write_kept(out / "afdb", [m.path for m in models if m.kept])  # the rest stay for a resume
        else:
            from pipelines.protein.sources.rcsb import pull_entries

            files = pull_entries(self.rcsb_ids(cfg), out, mirror=data.mirror, fmt=data.fmt)
        if data.test_dir:
            held = out / "heldout"
            held.mkdir(exist_ok=True)
            files += [fetch(str(f), held / f.name) for f in structure_files(Path(data.test_dir))]
        return [Path(f) for f in files]

    def rcsb_ids(self, cfg) -> list[str]:
        from pipelines.protein.sources import rcsb

        data = cfg.project.data
        ids = list(data.ids)
        if data.ids_file:
            ids += rcsb.read_id_file(data.ids_file)
        if data.pisces:
            ids += rcsb.ids_from_pisces(
                data.pisces, max_resolution=data.max_resolution, max_r_factor=data.max_r_factor,
                min_length=data.min_length, max_length=data.max_length,
            )  # fmt: skip
        if data.search:
            ids += rcsb.search(json.loads(data.search))
        return list(dict.fromkeys(i.upper() for i in ids))

    def checks(self, cfg, paths: Paths):
        from pipelines.protein.data import checks

        return checks(paths.raw, cfg.project.data)

    def prepare(self, cfg, paths: Paths, out: Path) -> dict:
        from pipelines.protein.data import prepare

        return prepare(paths.raw, cfg.project.data, cfg.project.model, cfg.seed, out)

    def datamodule(self, cfg, paths: Paths):
        from pipelines.protein.data import ProteinData

        model, train = cfg.project.model, cfg.project.train
        return ProteinData(paths.prepared, model.crop, cfg.seed, train.num_workers, window=model.window)

    # ---- model ------------------------------------------------------------------------------------

    def architecture(self, model) -> dict:
        keys = ("hidden", "layers", "heads", "channels", "blocks", "dropout", "edges", "spatial_k")
        architecture = {k: getattr(model, k) for k in keys}
        architecture["edges"] = list(model.edges)  # a plain list for hparams and model.json, whatever built it
        return architecture

    def build_module(self, cfg, datamodule, hparams: dict):
        from pipelines.protein.contacts import ContactNet
        from pipelines.protein.module import ProteinModule

        section = cfg.project
        model = dataclasses.replace(section.model, **{k: v for k, v in hparams.items() if k not in OPTIMISER_KEYS})
        net = ContactNet(**self.architecture(model))
        return ProteinModule(
            net,
            {
                "lr": hparams.get("lr", section.train.lr),
                "weight_decay": hparams.get("weight_decay", section.train.weight_decay),
                "architecture": self.architecture(model),
                "window": datamodule.window,  # the sequence graph trained on: served with the same one
            },
        )

    def search_space(self, cfg, trial) -> dict:
        """Learning rate within 3x of params.yaml's, weight decay, dropout (components.tune.optimiser_space)."""
        from components.tune import optimiser_space

        return optimiser_space(trial, cfg.project.train.lr, weight_decay=(1e-5, 1e-1))

    def evaluate(self, cfg, net, datamodule, paths: Paths):
        from pipelines.protein.evaluate import evaluate

        return evaluate(net, datamodule, cfg.seed, fold=cfg.project.fold)

    def export(self, cfg, module, paths: Paths, out: Path) -> None:
        """model.json (architecture, input limits, graph window), weights.pt (the network's state_dict)."""
        import torch

        data = cfg.project.data
        config = {
            "architecture": module.hparams["architecture"],
            "window": module.hparams.get("window") or json.loads((paths.prepared / "meta.json").read_text())["window"],
            "min_length": data.min_length,
            "max_length": data.max_length,
            "fold_steps": cfg.project.fold.steps,
            "fold_lr": cfg.project.fold.lr,
            "lr": module.hparams["lr"],
            "weight_decay": module.hparams["weight_decay"],
        }
        (out / "model.json").write_text(json.dumps(config, indent=2) + "\n")
        torch.save(module.net.state_dict(), out / "weights.pt")

    def load_module(self, cfg, paths: Paths):
        from pipelines.protein.pyfunc import ProteinContactModel

        return ProteinContactModel.from_dir(paths.model).net

    # ---- serving ----------------------------------------------------------------------------------

    def requests(self, paths: Paths, split: str):
        import pandas as pd

        from pipelines.protein.dataset import ChainGraphs

        chains = ChainGraphs(paths.prepared / f"{split}.pt")
        return pd.DataFrame({"sequence": [chains[i].sequence for i in range(len(chains))]})

    def pyfunc(self, cfg, paths: Paths) -> PyfuncSpec:
        from pipelines.protein.pyfunc import ProteinContactModel, artifact_paths

        loaded = ProteinContactModel.from_dir(paths.model)
        example = self.requests(paths, "test").head(2)
        return PyfuncSpec(
            python_model=str(Path(__file__).with_name("model_code.py")),  # models-from-code: no pickle
            artifacts=artifact_paths(paths.model),
            input_example=example,
            output_example=loaded.predict(None, example),
            requirements=("torch", "torch-geometric", "gemmi", "numpy", "pandas", "scipy"),
        )

    def score(self, python_model, cfg, paths: Paths) -> float:
        """test/long_L5 of a registered version on the current prepared test chains."""
        import numpy as np

        from pipelines.protein import geometry
        from pipelines.protein.dataset import ChainGraphs

        chains = ChainGraphs(paths.prepared / "test.pt")
        values = []
        for i in range(len(chains)):
            data = chains[i]
            scores = geometry.contact_probability(python_model.distogram(data.sequence))
            p = geometry.top_precision(scores, geometry.distances(data.points.numpy()), "long", 5)
            if p is not None:
                values.append(p)
        return float(np.mean(values)) if values else 0.0

    def app(self, cfg, host: str = "127.0.0.1", port: int = 7860) -> None:
        from pipelines.protein.app import launch

        launch(cfg, host=host, port=port)


PROTEIN = Protein()
