"""Variational autoencoders: train-vae and sample-vae."""
