"""The clinician app: a chest X-ray (+ age, sex, view) in, the 14 findings with the registered model's
probabilities and operating thresholds out, and a Grad-CAM overlay for the finding picked.

    python -m pipelines medical app                          # the profile's model (cfg.model_name)
    python -m pipelines.medical.serving.app --model medical-demo --port 7861

Research use only. The model is resolved once at start (alias -> concrete version), as in
components.serve, so every answer comes from one known version. Bad input (not an image, empty,
too large, too small, too many pixels, an age outside [0, 120]) gets a readable message, never a stack
trace; the image limits are the registered model's own (pyfunc.check_image_header), read from the
file's header before any pixel is decoded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

NOTICE = "⚠️ **Research use only — not for clinical decisions.** Outputs are not a diagnosis."
MAX_BYTES = 20 * 1024 * 1024  # larger uploads are refused before decoding
MAX_AGE = 120
SEXES = ("unknown", "M", "F")
VIEWS = ("unknown", "PA", "AP")
COLUMNS = ["finding", "probability", "threshold", "above threshold"]


class InputError(ValueError):
    """An upload or field the app refuses; the message says what to fix."""


def read_image(path) -> np.ndarray:
    """An uploaded file -> 2-D uint8 film (RGBA/RGB/16-bit converted to gray), or InputError."""
    from pipelines.medical.serving.pyfunc import InputError as ModelInputError
    from pipelines.medical.serving.pyfunc import check_image_header
    from pipelines.medical.sources.nih import decode_image

    if not path:
        raise InputError("Please upload a chest X-ray (PNG or JPEG).")
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise InputError("The uploaded file could not be read; please upload it again.") from None
    if size == 0:
        raise InputError("The uploaded file is empty; please upload a PNG or JPEG chest X-ray.")
    if size > MAX_BYTES:
        raise InputError(f"The file is too large ({size / 2**20:.1f} MB); the limit is {MAX_BYTES // 2**20} MB.")
    data = path.read_bytes()
    try:
        check_image_header(data, column=None)  # header only: no pixel is decoded before the limits pass
    except ModelInputError as err:
        reason = err.reason
        if reason.startswith("not an image"):
            raise InputError("The file is not an image the app can read; please upload a PNG or JPEG.") from None
        raise InputError(f"The file was refused: {reason}.") from None
    try:
        return decode_image(data, path.name)
    except ValueError:
        raise InputError(
            "The image could not be decoded (corrupt or truncated file); please upload it again."
        ) from None


def check_age(age) -> float | None:
    """None (unknown) or an age in [0, 120] years; anything else is an InputError."""
    if age is None or (isinstance(age, str) and not age.strip()):
        return None
    try:
        value = float(age)
    except (TypeError, ValueError):
        raise InputError(f"Age must be a number of years, got {age!r}.") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_AGE:
        raise InputError(f"Age must be between 0 and {MAX_AGE} years (or left empty), got {age}.")
    return value


def load_champion(name: str, alias: str = "champion"):
    """Resolve `name@alias` (name: the registered model, cfg.model_name) to its version once and load it."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    version = client.get_model_version_by_alias(name, alias).version
    entity = client.get_model_version(name, str(version))
    classifier = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    info = {
        "model": name,
        "alias": alias,
        "version": str(version),
        "run_id": entity.run_id,
        "data_version": (entity.tags or {}).get("scifolio.data_version", "unknown"),
    }
    return classifier, info


def predict(classifier, film: np.ndarray, age, sex, view):
    """One film -> (table sorted by probability, model inputs x [1,1,S,S] and tokens, top finding)."""
    from pipelines.medical.text import metadata_text

    text = metadata_text(age, None if sex == "unknown" else sex, None if view == "unknown" else view)
    x, tokens = classifier.tensors([film], [text])
    probs = classifier.predict_proba([film], [text])[0]
    findings = list(classifier.config["findings"])
    # NaN: no operating point (the finding had no positives when thresholds were chosen)
    thresholds = [float(classifier.thresholds.get(f, math.nan)) for f in findings]
    table = (
        pd.DataFrame(
            {
                "finding": findings,
                "probability": np.round(probs.astype(float), 4),
                "threshold": [f"{t:.4f}" if math.isfinite(t) else "n/a" for t in thresholds],
                "above threshold": ["yes" if math.isfinite(t) and p >= t else "no" for p, t in zip(probs, thresholds)],
            }
        )
        .sort_values("probability", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    return table, x, tokens, table["finding"].iloc[0]


def cam_overlay(classifier, x, tokens, finding: str) -> np.ndarray:
    """Grad-CAM of `finding` over the transformed film: uint8 RGB [S, S, 3]."""
    import torch

    from pipelines.medical.evaluation.explain import gradcam, overlay

    x, tokens = torch.as_tensor(x), torch.as_tensor(tokens)
    index = list(classifier.config["findings"]).index(finding)
    cam = gradcam(classifier.net, x, tokens, index)[0]
    image = overlay(x[0, 0].numpy(), cam)
    k = max(1, 320 // image.shape[0])  # small demo inputs (64 px): nearest-neighbour upscale for display
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def build_app(classifier, info: dict):
    import gradio as gr

    findings = list(classifier.config["findings"])
    empty = pd.DataFrame(columns=COLUMNS)
    version_line = (
        f"Model **{info.get('model', 'medical')} v{info.get('version')}** "
        f"(alias {info.get('alias', 'champion')}) · data version `{info.get('data_version')}` "
        f"· run `{info.get('run_id')}`"
    )

    def on_predict(path, age, sex, view):
        try:
            age = check_age(age)
            film = read_image(path)
            table, x, tokens, top = predict(classifier, film, age, sex, view)
            image = cam_overlay(classifier, x, tokens, top)
        except InputError as err:
            gr.Warning(str(err))
            return empty, gr.update(choices=findings, value=None), None, None, f"⚠️ {err}"
        except Exception:  # a bug, not the user's fault: a message, never a traceback
            msg = "Something went wrong while analysing this image; please try another file."
            gr.Warning(msg)
            return empty, gr.update(choices=findings, value=None), None, None, f"⚠️ {msg}"
        state = {"x": x.numpy(), "tokens": tokens.numpy()}
        choices = list(table["finding"])
        return (
            table,
            gr.update(choices=choices, value=top),
            image,
            state,
            f"Analysed. Top finding: **{top}** ({table['probability'].iloc[0]:.3f}).",
        )

    def on_finding(finding, state):
        if not state or not finding:
            return None
        try:
            return cam_overlay(classifier, state["x"], state["tokens"], finding)
        except Exception:
            gr.Warning("Could not compute the Grad-CAM overlay for this finding.")
            return None

    with gr.Blocks(title="scifolio · chest X-ray findings (research use only)") as app:
        gr.Markdown(NOTICE, elem_id="notice")
        gr.Markdown("# Chest X-ray findings\nUpload a frontal chest X-ray (PNG/JPEG); age, sex and view are optional.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label="Chest X-ray (PNG/JPEG)",
                    file_types=[".png", ".jpg", ".jpeg"],
                    type="filepath",
                    elem_id="upload",
                )
                age = gr.Number(label=f"Age (years, 0-{MAX_AGE}; optional)", value=None, elem_id="age")
                sex = gr.Radio(list(SEXES), value="unknown", label="Sex", elem_id="sex")
                view = gr.Radio(list(VIEWS), value="unknown", label="View", elem_id="view")
                button = gr.Button("Predict", variant="primary", elem_id="predict")
                status = gr.Markdown("", elem_id="status")
            with gr.Column():
                table = gr.Dataframe(
                    value=empty,
                    headers=COLUMNS,
                    interactive=False,
                    label="Findings (sorted by probability)",
                    elem_id="findings",
                )
                gr.Markdown("Threshold *n/a*: the model has no validated operating point for that finding.")
                finding = gr.Dropdown(choices=findings, value=None, label="Grad-CAM for finding", elem_id="finding")
                cam = gr.Image(label="Grad-CAM overlay", type="numpy", interactive=False, elem_id="overlay")
        gr.Markdown(version_line, elem_id="version")
        state = gr.State(None)
        button.click(on_predict, [upload, age, sex, view], [table, finding, cam, state, status])
        finding.input(on_finding, [finding, state], cam)
    return app


def launch(model_name: str, host: str = "127.0.0.1", port: int = 7860, alias: str = "champion") -> None:
    """Serve the app for `models:/<model_name>@<alias>` (e.g. cfg.model_name: medical, medical-demo)."""
    from components.config import quiet_environment

    quiet_environment()
    classifier, info = load_champion(model_name, alias)
    build_app(classifier, info).launch(server_name=host, server_port=port, share=False)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.medical.serving.app", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--model", default=None, help="registered model (default: params.yaml's profile's, cfg.model_name)"
    )
    parser.add_argument("--profile", choices=["demo", "full"], default=None, help="the profile naming the model")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        from components.config import load_config
        from pipelines.medical.project import MEDICAL

        model = load_config("medical", MEDICAL.section, profile=args.profile).model_name
    launch(model, port=args.port, alias=args.alias)


if __name__ == "__main__":
    main()
