"""MLflow "models from code" entry: the registered pyfunc is built from this file, not a pickle.

MLflow copies this file into the logged model and runs it at load time; the weights and the networks'
configuration come from the model's artifacts (see pyfunc.py).
"""

from mlflow.models import set_model

from pipelines.art.pyfunc import ArtModel

set_model(ArtModel())
