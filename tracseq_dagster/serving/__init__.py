"""Code the ``sample_quality`` service runs beside the model: the prediction log and friends."""
