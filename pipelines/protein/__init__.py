"""Protein structure learning: residue graphs from PDB/mmCIF entries (real wwPDB files, or the gemmi-written demo)."""
