"""MLflow "models from code" entry for the medical pyfunc (no pickle; artifacts carry the weights)."""

from mlflow.models import set_model

from pipelines.medical.serving.pyfunc import ChestXrayClassifier

set_model(ChestXrayClassifier())
