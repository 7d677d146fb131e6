"""Serving trained models through MLflow: every finished run logs a pyfunc model.

A checkpoint alone rebuilds a model (:func:`rnnlab.inference.load_checkpoint`), and the
inference CLIs turn raw text into predictions from it. This package wraps the same code
as an MLflow model, so ``mlflow.pyfunc.load_model(uri).predict(...)``,
``mlflow models predict`` and ``mlflow models serve`` take raw inputs (text, frames, a
history, a prompt) and return predictions, with the vocabularies and scalers inside.

* :mod:`rnnlab.serving.predictors`: one predictor per task kind (its input and output
  schema, an input example, and ``predict`` on a DataFrame);
* :mod:`rnnlab.serving.pyfunc`: the :class:`mlflow.pyfunc.PythonModel` classes;
* :mod:`rnnlab.serving.publish`: logging a run's model (and a baseline's) at the end of a run.
"""
