"""The adversarial loss (the report's third idea) as an add-on of the pretraining step: the MAE decoder is the
generator and a PatchGAN discriminator judges real vs reconstructed images (docs/gan.md)."""
