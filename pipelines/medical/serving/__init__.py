"""The deployed side: the registered pyfunc, the clinician app and the monitored features."""
