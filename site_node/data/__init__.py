"""A site's own data for the consortium's task: read, validated against the task, split and
encoded with the task's fixed preprocessing (:mod:`.dataset`), or refused with a report naming
the column or file, the rule and the first offending rows (:mod:`.report`).

Tables are CSV or Parquet, read, checked and encoded a chunk of rows at a time (:mod:`.tables`,
:mod:`.tabular`, :mod:`.table_check`); images a folder per class (:mod:`.images`) or a MedMNIST
``.npz`` (:mod:`.npz`), each checked from its header before anything is decoded. The embedded
examples' files are in ``examples/`` beside this package, each with its provenance.
"""

from site_node.data.cache import load_cached
from site_node.data.dataset import SiteData, load_site_data, with_site_indicator
from site_node.data.report import DataRefused, DataReport
from site_node.data.summary import DataSummary

__all__ = ["DataRefused", "DataReport", "DataSummary", "SiteData", "load_cached",
           "load_site_data", "with_site_indicator"]
