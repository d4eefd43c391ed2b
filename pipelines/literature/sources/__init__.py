"""Readers and clients of the literature sources: PubMed (E-utilities, baseline files), arXiv (API, OAI-PMH, snapshot), labelled sets."""
