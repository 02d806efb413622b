"""DCGAN / AC-GAN: train-gan, sample-gan and evaluate-gan."""

from dlkit.core.registry import register

register("generator", "train-gan", "dlkit.gan.sample:open_generator")
