"""The seed document's CIFAR-10 CNN (Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10)."""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
from keras import layers  # noqa: E402

from dlkit.data.readers import load_cifar10  # noqa: E402

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
batch_size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
data = load_cifar10(None)
train_images, train_labels = data.x_train, data.y_train
test_images, test_labels = data.x_test, data.y_test
train_images, test_images = train_images / 255.0, test_images / 255.0

model = keras.models.Sequential([
    keras.layers.Input((32, 32, 3)),
    layers.Conv2D(32, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"),
    layers.Flatten(),
    layers.Dense(64, activation="relu"),
    layers.Dense(10),
])
model.compile(optimizer="adam",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
start = time.perf_counter()
model.fit(train_images, train_labels, epochs=epochs, batch_size=batch_size, verbose=2)
seconds = time.perf_counter() - start
loss, accuracy = model.evaluate(test_images, test_labels, verbose=0)
print(json.dumps({"test_accuracy": accuracy, "train_seconds": seconds,
                  "images_per_second": len(train_images) * epochs / seconds}))
