"""Streamlit dashboard of the hospital consortium.

It reads the run store read-only and imports nothing from :mod:`consortium` except the
stdlib-only :mod:`consortium.store` and :mod:`consortium.records`, so it never pulls in torch,
Flower or Opacus.
"""
