"""`dlkit serve`: trained model folders behind TensorFlow Serving's REST API."""
