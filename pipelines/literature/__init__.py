"""literature: scientific-text NLP on PubMed, arXiv and labelled citation/abstract corpora (work in progress: issue 9)."""
