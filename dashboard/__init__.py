"""Streamlit dashboard of the hospital consortium.

It reads the run store read-only and imports nothing from :mod:`consortium` except the run
store (:mod:`consortium.store`) and the audit report (:mod:`consortium.audit`), so it never
pulls in torch, Flower or Opacus.
"""
