"""The protein app: the backend on a tiny untrained ContactNet saved the way `train` saves one (contacts table,
maps, folded trace, refusals, a missing model), and a real browser (Debian Chromium via playwright) pasting
the example sequence, reading the contacts table, then pasting a bad one and reading the refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.protein.app import EXAMPLE_SEQUENCE, TABLE_COLUMNS, Backend, build_app, clean_sequence
from tests.browser import browser_page

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURE = {"hidden": 16, "layers": 1, "heads": 2, "channels": 8, "blocks": 1, "dropout": 0.0}
SHORT = "MKTAYIAKQRQISFVKSHFSRQ"  # 22 residues: under the model's 30


def make_cfg(tmp: Path):
    from components.config import load_config
    from pipelines.protein.project import PROTEIN

    # a store of the test's own: the default models:/ URI must miss, not find a champion on this machine
    return load_config("protein", PROTEIN.section, REPO / "params.yaml", "demo", [f"tracking.uri=sqlite:///{tmp}/m.db"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """model.json + weights.pt of an untrained tiny net, as Protein.export writes them (no MLflow)."""
    import torch

    from pipelines.protein.contacts import ContactNet

    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    torch.save(ContactNet(**ARCHITECTURE).state_dict(), folder / "weights.pt")
    config = {"architecture": ARCHITECTURE, "window": 8, "min_length": 30, "max_length": 400, "fold_steps": 30}
    (folder / "model.json").write_text(json.dumps({**config, "lr": 0.001, "weight_decay": 0.0}))
    return folder


@pytest.fixture(scope="module")
def backend(model_dir, tmp_path_factory) -> Backend:
    return Backend(make_cfg(tmp_path_factory.mktemp("store")))


def test_example_is_the_first_chain_of_a_shared_structure(shared_data):
    import gemmi

    structure = gemmi.read_structure(str(shared_data / "protein" / "2LZM.pdb.gz"))
    chain = structure[0][0].get_polymer()
    assert EXAMPLE_SEQUENCE == gemmi.one_letter_code([r.name for r in chain]) and len(EXAMPLE_SEQUENCE) == 164


def test_pasted_fasta_is_cleaned_but_not_corrected():
    assert clean_sequence(">sp|P00720 lysozyme\nMNIFE MLRID\r\n  EGLRL\n") == "MNIFEMLRIDEGLRL"
    assert clean_sequence("MKT1A\n") == "MKT1A"  # a digit stays: the model names it
    assert clean_sequence(None) == ""


def test_predict_contacts_table_and_map(backend, model_dir):
    figure, table, trace, pdb_text, message = backend.predict(EXAMPLE_SEQUENCE.lower(), False, str(model_dir))
    length = len(EXAMPLE_SEQUENCE)
    assert figure is not None and trace is None and pdb_text == ""
    assert figure.axes and figure.axes[0].images[0].get_array().shape == (length, length)
    assert list(table.columns) == TABLE_COLUMNS and 0 < len(table) <= length
    assert ((table.j - table.i) >= 24).all() and (table.i >= 1).all() and (table.j <= length).all()  # 1-based
    assert (table.separation == table.j - table.i).all() and table.probability.between(0, 1).all()
    assert table.probability.is_monotonic_decreasing
    assert [EXAMPLE_SEQUENCE[i - 1] for i in table.i] == list(table.residue_i)  # residue letters match 1-based i
    assert f"{length} residues" in message and str(model_dir) in message


def test_predict_with_fold_returns_a_ca_trace(backend, model_dir):
    import gemmi

    sequence = EXAMPLE_SEQUENCE[:60]
    figure, table, trace, pdb_text, message = backend.predict(sequence, True, str(model_dir))
    structure = gemmi.read_pdb_string(pdb_text)
    atoms = [(r.name, a.name) for r in structure[0][0] for a in r]
    assert len(atoms) == 60 and all(name == "CA" for _, name in atoms)
    assert atoms[0][0] == "MET" and atoms[2][0] == "ILE"  # residue names follow the sequence
    assert figure is not None and trace is not None and trace.axes[0].name == "3d"
    assert "Cα trace folded" in message


@pytest.mark.parametrize(
    ("sequence", "reason"),
    [
        (EXAMPLE_SEQUENCE[:40] + "1" + EXAMPLE_SEQUENCE[40:80], "position 40: '1' is not one of the alphabet"),
        (EXAMPLE_SEQUENCE[:10] + "B" + EXAMPLE_SEQUENCE[10:80], "position 10: 'B' is not one of the alphabet"),
        (SHORT, "the sequence has 22 letters; the model takes 30 to 400"),
    ],
)
def test_bad_sequence_is_refused_with_the_payload_message(backend, model_dir, sequence, reason):
    figure, table, trace, pdb_text, message = backend.predict(sequence, True, str(model_dir))
    assert (figure, table, trace, pdb_text) == (None, None, None, "")
    assert "refused" in message and "column 'sequence', row 0" in message and reason in message
    assert "Traceback" not in message


def test_missing_model_says_what_to_run(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/empty.db")  # a store with no champion
    *outputs, message = backend.predict(EXAMPLE_SEQUENCE, False, "")  # the default: the demo champion
    assert outputs == [None, None, None, ""]
    assert "No model at `models:/protein-demo@champion`" in message and "python -m pipelines protein all" in message
    (tmp_path / "model.json").write_text("{}")  # a half-written model folder: train again
    assert "run `python -m pipelines protein train`" in backend.predict(EXAMPLE_SEQUENCE, False, str(tmp_path))[-1]
    assert "No model at" in backend.predict(EXAMPLE_SEQUENCE, False, str(tmp_path / "nothing"))[-1]
    assert "Paste a protein sequence" in backend.predict(" \n ", False, "")[-1]


def test_project_has_the_app_capability():
    from components.project import capabilities
    from pipelines.protein.project import PROTEIN

    assert "app" in capabilities(PROTEIN)


@pytest.mark.slow
def test_browser_predicts_contacts_and_shows_refusals(model_dir, tmp_path):
    app = build_app(make_cfg(tmp_path))
    with browser_page(app, 1400, 1600) as page:
        page.locator("#model_uri textarea, #model_uri input").first.fill(str(model_dir))
        page.locator("#example").click()
        sequence = page.locator("#sequence textarea").first
        page.wait_for_function(
            "n => document.querySelector('#sequence textarea').value.length === n", arg=len(EXAMPLE_SEQUENCE)
        )
        assert sequence.input_value() == EXAMPLE_SEQUENCE
        page.locator("#predict").click()
        page.locator("#status").get_by_text("164 residues").wait_for()
        page.locator("#contact_map img").first.wait_for()  # the matplotlib figure, sent as an image
        page.wait_for_function("document.querySelectorAll('#contacts [role=gridcell]').length >= 60")
        cells = page.locator("#contacts [role=gridcell]").all_inner_texts()[:6]
        i, j = int(cells[0]), int(cells[1])
        assert j - i >= 24 and cells[2:4] == [EXAMPLE_SEQUENCE[i - 1], EXAMPLE_SEQUENCE[j - 1]]
        sequence.fill(EXAMPLE_SEQUENCE[:40] + "B" + EXAMPLE_SEQUENCE[40:])
        page.locator("#predict").click()
        page.locator("#status").get_by_text("'B' is not one of the alphabet").wait_for()
        assert "column 'sequence', row 0" in page.locator("#status").inner_text()
        assert "Traceback" not in page.locator("body").inner_text()
