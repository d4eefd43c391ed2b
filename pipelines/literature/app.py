"""The literature app (Gradio Blocks, 127.0.0.1 by default): classify a sentence, search and recommend papers,
view the topic trends.

- Classify: any registered literature task model by URI (models:/literature-hedging@champion, ...), by default
  `literature.analysis.app_model` or the champion of literature-intent[-demo]; a pyfunc with a `text` column
  in and `label` + `p_<label>` out.
- Search & recommend: free text, or paper ids (one id: similar papers; several: a reader's library) against
  the faiss index the recommend step saved (analysis/recommend.py `Recommender`).
- Trends: the figures the trends step drew.
Every artefact is optional: a missing index, figure or model shows a message saying which step to run; the
app starts regardless.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipelines.literature.analysis.common import step_dir

log = logging.getLogger("scifolio.literature.app")


def default_model_uri(cfg) -> str:
    from components.config import model_name

    return cfg.project.analysis.app_model or f"models:/{model_name('literature', cfg.profile, 'intent')}@champion"


class Backend:
    """What the UI calls; plain functions returning (table or None, message), so tests can call them directly."""

    def __init__(self, cfg, data_dir: Path):
        self.cfg, self.data_dir = cfg, Path(data_dir)
        self.models: dict = {}
        self.recommenders: dict = {}

    def corpora(self) -> list[str]:
        folder = step_dir(self.data_dir, "recommend")
        return [n for n in ("pubmed", "arxiv") if (folder / f"{n}.faiss").is_file()]

    def classify(self, text: str, uri: str):
        import pandas as pd

        text, uri = (text or "").strip(), (uri or "").strip() or default_model_uri(self.cfg)
        if not text:
            return None, "Type a sentence or citation context to classify."
        if uri not in self.models:
            try:
                import mlflow

                self.models[uri] = mlflow.pyfunc.load_model(uri)
            except Exception as err:  # not registered, no champion, bad URI: say so in the UI
                return None, f"No model at {uri}: {str(err).splitlines()[0][:300]}. Train and register one first."
        try:
            out = self.models[uri].predict(pd.DataFrame({"text": [text]}))
        except Exception as err:  # the model refuses the input (too long, empty): its own message
            return None, f"The model refused the input: {str(err).splitlines()[0][:300]}"
        probs = {c[2:]: float(out[c].iloc[0]) for c in out.columns if c.startswith("p_")}
        table = pd.DataFrame(sorted(probs.items(), key=lambda kv: -kv[1]), columns=["label", "probability"])
        return table.round(4), f"Predicted: {out['label'].iloc[0]} ({uri})"

    def recommend(self, corpus: str, query: str, ids: str, k: int = 10):
        from pipelines.literature.analysis.common import AnalysisError
        from pipelines.literature.analysis.recommend import Recommender

        if not self.corpora():
            return None, "No recommendation index yet: run `python -m pipelines.literature.analysis recommend`."
        corpus = corpus if corpus in self.corpora() else self.corpora()[0]
        try:
            if corpus not in self.recommenders:
                folder = step_dir(self.data_dir, "recommend")
                self.recommenders[corpus] = Recommender(folder, corpus, self.cfg.project.analysis.encoder)
            rec = self.recommenders[corpus]
            wanted = [i for i in (ids or "").replace(",", " ").split() if i]
            k = int(k or 10)
            if wanted:
                table, what = rec.similar(wanted, k), f"papers like {', '.join(wanted)}"
            else:
                table, what = rec.search_text(query or "", k), f"papers matching {query.strip()!r}"
        except AnalysisError as err:
            return None, str(err)
        return table, f"{len(table)} {what} in {corpus}"

    def trend_figures(self) -> tuple[list[str], str]:
        folder = step_dir(self.data_dir, "trends")
        figures = sorted(str(p) for p in folder.glob("*_topic_shares.png")) if folder.is_dir() else []
        if not figures:
            return [], "No topic-trend plot yet: run `python -m pipelines.literature.analysis trends`."
        return figures, f"{len(figures)} corpus trend plot(s) from {folder}"


def build_app(cfg, data_dir: Path):
    import gradio as gr

    backend = Backend(cfg, data_dir)
    corpora = backend.corpora()
    with gr.Blocks(title="Literature") as app:
        gr.Markdown("# Literature: classify, search, recommend, trends")
        with gr.Tab("Classify"):
            text = gr.Textbox(label="Sentence or citation context", lines=3, elem_id="classify_text")
            uri = gr.Textbox(label="Model URI", value=default_model_uri(cfg), elem_id="model_uri")
            go = gr.Button("Classify", elem_id="classify")
            status = gr.Markdown(elem_id="classify_status")
            probs = gr.Dataframe(headers=["label", "probability"], elem_id="probs", interactive=False)

            def on_classify(t, u):
                table, message = backend.classify(t, u)
                return (table if table is not None else gr.update(value=None)), message

            go.click(on_classify, [text, uri], [probs, status])
        with gr.Tab("Search & recommend"):
            corpus = gr.Radio(
                corpora or ["pubmed", "arxiv"], value=(corpora or ["pubmed"])[0], label="Corpus", elem_id="corpus"
            )
            query = gr.Textbox(label="Free text", elem_id="query")
            ids = gr.Textbox(label="or paper ids (PMIDs / arXiv ids; several = a library)", elem_id="ids")
            k = gr.Slider(1, 50, value=10, step=1, label="how many", elem_id="k")
            search = gr.Button("Search", elem_id="search")
            search_status = gr.Markdown(
                "" if corpora else "No recommendation index yet: run the recommend step.", elem_id="search_status"
            )
            results = gr.Dataframe(elem_id="results", interactive=False)

            def on_search(c, q, i, n):
                table, message = backend.recommend(c, q, i, n)
                return (table if table is not None else gr.update(value=None)), message

            search.click(on_search, [corpus, query, ids, k], [results, search_status])
        with gr.Tab("Trends"):
            figures, message = backend.trend_figures()
            gr.Markdown(message, elem_id="trends_status")
            for figure in figures:
                gr.Image(figure, label=Path(figure).stem, interactive=False)
    return app


def launch(cfg, data_dir: Path, host: str = "127.0.0.1", port: int = 7860) -> None:
    from components.config import quiet_environment

    quiet_environment()  # no analytics, no hub calls
    build_app(cfg, data_dir).launch(server_name=host, server_port=port, share=False)
