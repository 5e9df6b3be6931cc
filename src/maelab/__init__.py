"""maelab: masked-autoencoder research on small images."""

__version__ = "0.1.0"
