"""Datasets: where to find them (`locate`), how to read them (`readers`, `images`) and how to feed
them to Keras (`pipelines`)."""
