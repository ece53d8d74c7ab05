"""A hospital's own data: loading, the fixed split and preprocessing.

The embedded example is the UCI Heart Disease data (:mod:`.heart_disease`; its provenance is in
``PROVENANCE.md`` beside it).
"""

from site_node.data.heart_disease import SiteData, load_site

__all__ = ["SiteData", "load_site"]
