"""Evaluations of a pretrained encoder: linear probe, k-NN, fine-tuning, from-scratch baseline, reconstruction."""
