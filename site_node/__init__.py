"""The site node: what a hospital installs (with :mod:`policies`).

Importing it switches off Flower's and Ray's usage telemetry (:mod:`site_node.telemetry`).
"""

from site_node import telemetry

telemetry.switch_off()
