"""MLflow "models from code" entry: the registered pyfunc is built from this file, not a pickle.

MLflow copies this file into the logged model and runs it at load time; the weights, config and
tokenizer come from the model's artifacts (see pyfunc.py). The model's task is in its model.json.
"""

from mlflow.models import set_model

from pipelines.literature.pyfunc import LiteratureModel

set_model(LiteratureModel())
