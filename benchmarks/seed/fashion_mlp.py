"""The seed document's Fashion-MNIST classifier (Flatten, Dense 128, Dropout 0.2, Dense 10)."""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

from dlkit.data.readers import load_mnist_family  # noqa: E402

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
data = load_mnist_family("fashion-mnist", None)
x_train, y_train = data.x_train[..., 0], data.y_train
x_test, y_test = data.x_test[..., 0], data.y_test
x_train, x_test = x_train / 255.0, x_test / 255.0

model = keras.models.Sequential([
    keras.layers.Input((28, 28)),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(x_train, y_train, epochs=epochs, verbose=2)
seconds = time.perf_counter() - start
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"test_accuracy": accuracy, "train_seconds": seconds,
                  "images_per_second": len(x_train) * epochs / seconds}))
