"""scifolio projects: one package per project, each a plug-in of components/ (see registry.py)."""
