"""The run store: runs, rounds, site figures and checkpoints, plus the audit tables, in one
SQLite file. Standard library only: the dashboard and the export use it without torch or
Flower."""
