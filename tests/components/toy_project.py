"""A monitoring stand-in shared by the monitor tests: a request's rows are its items, `x` in and `y` out."""

import pandas as pd

from components.monitor import FeatureSpec


class OneRowPerRequest:
    """A project stand-in: a request's rows are its items; the feature is the `x` column."""

    name = "toy"

    @staticmethod
    def monitor_features(python_model, request, answer):
        return pd.DataFrame({"x": request["x"].astype(float), "y": answer["y"].astype(float)})

    @staticmethod
    def monitor_spec(python_model):
        return FeatureSpec(numerical=["x"], categorical=[], outputs=["y"])
