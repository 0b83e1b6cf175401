"""Labelling new photos in EMOTIC's format with Label Studio, and reading the labels back as records.

The workflow, one module per step (each used by one ``emoctx annotate`` sub-command):

* :mod:`~emoctx.annotate.config`: the Label Studio labelling config, generated from :mod:`emoctx.labels`
  (person boxes; per box the 26 categories with their definitions as hints, V/A/D 1-10, gender, age).
* :mod:`~emoctx.annotate.tasks`: Label Studio tasks from photos (a person detector or a box file), from
  records or from a prediction table, with the boxes (and optionally the model's suggestions) as
  pre-annotations.
* :mod:`~emoctx.annotate.server`: a real Label Studio in its own virtual environment, started offline on
  127.0.0.1, and :mod:`~emoctx.annotate.client`: its REST API (project, photos, tasks, users, export).
* :mod:`~emoctx.annotate.export`: Label Studio's full JSON export to canonical records, every value
  validated, several annotators of a person kept and combined (:func:`~emoctx.annotate.export.combine`).
* :mod:`~emoctx.annotate.agreement`: how far the annotators of a batch agree.
"""
