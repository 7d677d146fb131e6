"""The code MLflow stores with every pyfunc model the lab logs ("models from code").

MLflow copies this file into the model and runs it when the model is loaded; the model
itself comes from the installed ``rnnlab`` package and its artifacts, never from a pickle.
"""

from mlflow.models import set_model

from rnnlab.serving.pyfunc import LabModel

set_model(LabModel())
