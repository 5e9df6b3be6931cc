"""Weights in and out of the formats peers use: HF transformers' ViTMAE and ViT folders, timm's VisionTransformer
state dict. Plain JSON and safetensors: neither transformers nor timm is imported here."""
