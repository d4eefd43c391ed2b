"""Analyses of the literature corpora, each a step with a report, figures and an MLflow run.

corpus (corpus.py) -> trends (trends.py), recommend (recommend.py), bias (bias.py, spin.py, hedging.py);
the app (pipelines/literature/app.py) reads what they leave under data/literature/analysis/.
Run one with `python -m pipelines.literature.analysis <step> [--profile demo|full] [--set key=value ...]`.
"""
