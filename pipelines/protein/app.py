"""The protein app (Gradio Blocks, 127.0.0.1 by default): paste a sequence, see its predicted contact map, the
top long-range contacts and, on request, a Cα trace folded from the predicted distogram.

- Model: a registered version by URI (default `models:/protein[-demo]@champion`, the profile's champion) or a
  local model folder holding model.json + weights.pt (what the `train` stage writes to data/protein/model).
  Either way the app calls `ProteinContactModel.predict` itself, so the payload checks are the server's.
- Input: one chain of one-letter codes; a FASTA header line and line breaks are dropped (what people paste),
  anything else (digits, B/J/O/U/X/Z, too short or long) is the model's PayloadError, shown as-is.
- Output: the contact map (matplotlib), a table of the top-L long-range (|i-j| >= 24) pairs, 1-based, and
  with "fold" a 3-D plot of the Cα trace, its PDB text and a downloadable .pdb file.
Nothing here crashes on a missing model or a bad sequence: the status box says what to fix or which stage to
run. Gradio and matplotlib are imported inside functions so `python -m pipelines` starts fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("scifolio.protein.app")

# T4 lysozyme (PDB 2LZM chain A, 164 residues): a real, well-studied fold within the model's 30-400 limits;
# many of the shared samples (107L, 1L63, ...) are its mutants
EXAMPLE_SEQUENCE = (
    "MNIFEMLRIDEGLRLKIYKDTEGYYTIGIGHLLTKSPSLNAAKSELDKAIGRNCNGVITKDEAEKLFNQDVDAAVRGILRNAKLKPVYDSLDAVRRCALINMVF"
    "QMGETGVAGFTNSLRMLQQKRWDEAAVNLAKSRWYNQTPNRAKRVITTFRTGTWDAYKNL"
)
TABLE_COLUMNS = ["i", "j", "residue_i", "residue_j", "separation", "probability"]
MODEL_FILES = ("model.json", "weights.pt")


def default_model_uri(cfg) -> str:
    from components.apps import default_model_uri

    return default_model_uri("protein", cfg)


def clean_sequence(text: str | None) -> str:
    """One sequence from pasted text: FASTA header lines and all whitespace dropped, nothing else touched (a
    digit or a non-standard letter stays, so the model's own check names it)."""
    lines = [line for line in (text or "").splitlines() if not line.lstrip().startswith(">")]
    return "".join("".join(lines).split())


class Backend:
    """What the UI calls; plain methods, so tests can call them without a browser."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.models: dict = {}  # uri -> ProteinContactModel, loaded once per URI

    def model(self, uri: str):
        """The ProteinContactModel at `uri` (a local model folder or an MLflow model URI), cached."""
        if uri not in self.models:
            from components.apps import load_model
            from pipelines.protein.pyfunc import ProteinContactModel

            self.models[uri] = load_model(uri, self.cfg, "protein", MODEL_FILES, ProteinContactModel.from_dir)
        return self.models[uri]

    def predict(self, sequence: str, fold: bool, model_uri: str):
        """(contact-map figure, contacts table, trace figure, PDB text, status message); None where not made."""
        import pandas as pd

        from components.apps import ModelMissing
        from components.payload import PayloadError

        sequence, uri = clean_sequence(sequence), (model_uri or "").strip() or default_model_uri(self.cfg)
        if not sequence:
            return None, None, None, "", "Paste a protein sequence (one-letter codes) or click **Example**."
        try:
            model = self.model(uri)
        except ModelMissing as err:
            return None, None, None, "", str(err)
        request = pd.DataFrame({"sequence": [sequence], "fold": [int(bool(fold))]})
        try:
            row = model.predict(None, request).iloc[0]
        except PayloadError as err:  # the server's 422: column, row and reason
            return None, None, None, "", f"**The sequence was refused**: {err}"
        except Exception as err:  # anything else: a one-line message in the page, the traceback in the log
            log.exception("prediction failed for a %d-residue sequence", len(sequence))
            return None, None, None, "", f"**The prediction failed**: {str(err).splitlines()[0][:300]}"
        length = int(row["length"])
        sequence = sequence.upper()  # the model case-folds; residue names in the table follow it
        contacts = json.loads(row["top_contacts"])
        table = pd.DataFrame(
            [[i, j, sequence[i - 1], sequence[j - 1], j - i, p] for i, j, p in contacts], columns=TABLE_COLUMNS
        )
        figure = contact_map_figure(json.loads(row["contact_map"]), contacts, length)
        pdb_text = str(row["pdb"] or "")
        trace = trace_figure(pdb_text) if pdb_text else None
        message = (
            f"{length} residues; {row['contact_density']:.2f} expected long-range contacts per residue; "
            f"top {len(table)} long-range pairs (|i-j| >= 24) below"
            + ("; Cα trace folded from the distogram." if pdb_text else ".")
            + f" Model: `{uri}`."
        )
        return figure, table, trace, pdb_text, message


def contact_map_figure(contact_map: list, contacts: list, length: int):
    """The L x L contact probabilities, with the top L/5 long-range pairs (the CASP precision set) ringed
    below the diagonal so the map and the table can be read together."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in Gradio's worker threads

    figure = Figure(figsize=(5.5, 5), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(np.asarray(contact_map), cmap="Greys", vmin=0, vmax=1, origin="upper")
    top = np.asarray(contacts[: max(1, length // 5)], dtype=float).reshape(-1, 3)
    if len(top):  # image x is the column: x = i, y = j > i puts the marks below the diagonal
        ax.scatter(top[:, 0] - 1, top[:, 1] - 1, s=12, facecolors="none", edgecolors="tab:red", linewidths=0.8)
    ax.set(title=f"Contact probability (< 8 Å), L = {length}", xlabel="residue i", ylabel="residue j")
    figure.colorbar(image, ax=ax, shrink=0.8, label="P(contact)")
    return figure


def trace_figure(pdb_text: str):
    """The folded Cα trace as a 3-D line, coloured N- to C-terminus (gemmi reads the PDB the model wrote)."""
    import gemmi
    import numpy as np
    from matplotlib.figure import Figure

    structure = gemmi.read_pdb_string(pdb_text)
    xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for r in structure[0][0] for a in r if a.name == "CA"])
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    ax = figure.add_subplot(projection="3d")
    ax.plot(*xyz.T, color="0.6", linewidth=1.0)
    points = ax.scatter(*xyz.T, c=np.arange(len(xyz)), cmap="viridis", s=10, depthshade=False)
    ax.set(title=f"Folded Cα trace ({len(xyz)} residues)", xlabel="x (Å)", ylabel="y (Å)", zlabel="z (Å)")
    figure.colorbar(points, ax=ax, shrink=0.6, label="residue index (N to C)")
    return figure


def write_pdb_file(pdb_text: str, folder: Path) -> str | None:
    """The PDB text as a file for download, in a folder Gradio may serve (its temp directory)."""
    if not pdb_text:
        return None
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", suffix=".pdb", prefix="ca_trace_", dir=folder, delete=False)
    with handle:
        handle.write(pdb_text)
    return handle.name


def build_app(cfg):
    import tempfile

    import gradio as gr

    backend = Backend(cfg)
    downloads = Path(tempfile.gettempdir()) / "scifolio-protein-app"  # the temp dir Gradio serves by default
    with gr.Blocks(title="Protein contacts") as app:
        gr.Markdown(
            "# Protein: contacts from a single sequence\n"
            "Paste one chain (one-letter codes, 30-400 residues); the model predicts which residue pairs are "
            "within 8 Å and, with **fold**, a Cα trace fitted to its predicted distances."
        )
        with gr.Row():
            with gr.Column(scale=3):
                sequence = gr.Textbox(label="Sequence (FASTA header optional)", lines=5, elem_id="sequence")
            with gr.Column(scale=2):
                uri = gr.Textbox(
                    label="Model URI or local model folder", value=default_model_uri(cfg), elem_id="model_uri"
                )
                fold = gr.Checkbox(label="fold a Cα trace (a few seconds)", value=False, elem_id="fold")
                with gr.Row():
                    example = gr.Button("Example (T4 lysozyme)", elem_id="example")
                    go = gr.Button("Predict", variant="primary", elem_id="predict")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            contact_plot = gr.Plot(label="Contact map", elem_id="contact_map")
            trace_plot = gr.Plot(label="Folded Cα trace", elem_id="trace")
        contacts = gr.Dataframe(
            headers=TABLE_COLUMNS, label="Top long-range contacts (1-based)", elem_id="contacts", interactive=False
        )
        with gr.Row():
            # a scrolling box: a 400-residue trace is 400 lines
            pdb = gr.Code(label="Cα trace (PDB)", lines=12, max_lines=20, elem_id="pdb", interactive=False)
            pdb_file = gr.File(label="Download the trace", elem_id="pdb_file", interactive=False)

        def on_predict(s, f, u):
            figure, table, trace, pdb_text, message = backend.predict(s, f, u)
            # a refusal clears the previous chain's outputs, so nothing on the page belongs to another sequence
            return (
                figure,
                table if table is not None else gr.update(value=None),
                trace,
                pdb_text,
                write_pdb_file(pdb_text, downloads),
                message,
            )

        example.click(lambda: EXAMPLE_SEQUENCE, None, sequence)
        go.click(on_predict, [sequence, fold, uri], [contact_plot, contacts, trace_plot, pdb, pdb_file, status])
    return app


def launch(cfg, host: str = "127.0.0.1", port: int = 7860) -> None:
    from components.config import quiet_environment

    quiet_environment()  # no analytics, no hub calls
    build_app(cfg).launch(server_name=host, server_port=port, share=False)
