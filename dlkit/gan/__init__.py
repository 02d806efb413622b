"""DCGAN / AC-GAN: train-gan, sample-gan and evaluate-gan."""
