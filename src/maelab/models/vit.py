"""Vision-transformer building blocks: patch embedding, sin-cos positions, attention, blocks, encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maelab.models.patches import flat_rows, gather_rows, patchify, scatter_rows
from maelab.presets import ModelSpec


def sincos_pos_embed(dim: int, grid: int, order: str = "hw") -> Tensor:
    """Fixed 2-D sine-cosine position embedding (MAE, He et al. 2022): [grid * grid, dim] float32, row-major patch
    order; each half of the channels is [sin | cos] of one coordinate at dim / 4 frequencies 1 / 10000^(i / (dim/4)).

    ``order`` "hw": the patch's row index (h) in the first half of the channels, the column (w) in the second
    (maelab's runs). "wh": the column first, the layout of facebookresearch/mae's ``get_2d_sincos_pos_embed``
    (whose ``np.meshgrid(grid_w, grid_h)`` puts w first) and so of the HF and timm MAE weights. The two are the
    same vectors with their halves swapped; weights trained with one see transposed positions under the other.
    Raises AssertionError when ``dim`` is not a multiple of 4."""
    assert dim % 4 == 0, "embedding dim must be a multiple of 4"
    coords = torch.arange(grid, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))

    def encode(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)

    halves = [encode(yy), encode(xx)] if order == "hw" else [encode(xx), encode(yy)]
    return torch.cat(halves, dim=1).float()


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: imgs [N, 3, H, W] -> [N, L, D].

    ``embed_patches`` applies the same projection to already cut patches [N, K, p * p * 3] (any subset, e.g.
    only the visible ones), as a linear layer over the conv's weights.
    """

    def __init__(self, patch_size: int, dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, imgs: Tensor) -> Tensor:
        return self.proj(imgs).flatten(2).transpose(1, 2)

    def embed_patches(self, patches: Tensor) -> Tensor:
        """patches [N, K, p * p * C] in :func:`patchify`'s (py, px, c) order -> tokens [N, K, D]."""
        w = self.proj.weight  # [D, C, p, p]
        return F.linear(patches, w.permute(0, 2, 3, 1).reshape(w.shape[0], -1), self.proj.bias)


def split_heads(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """qkv [N, T, 3 * D] -> q, k, v, each a [N, heads, T, D / heads] view."""
    n, t, d3 = qkv.shape
    return qkv.view(n, t, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)


def sdpa_attention(qkv: Tensor, heads: int, key_mask: Optional[Tensor] = None) -> Tensor:
    """Multi-head softmax attention softmax(q kᵀ / √d) v (Vaswani et al. 2017), PyTorch's
    ``F.scaled_dot_product_attention``: qkv [N, T, 3 * D] -> [N, T, D], the heads concatenated.

    ``key_mask`` [N, T] bool hides the keys where False."""
    n, t, d3 = qkv.shape
    q, k, v = split_heads(qkv, heads)
    keys = None if key_mask is None else key_mask[:, None, None, :]  # [N, 1, 1, T], True = attend
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keys).transpose(1, 2).reshape(n, t, d3 // 3)


class Attention(nn.Module):
    """Multi-head self-attention: x [N, T, D] -> [N, T, D]; ``key_mask`` [N, T] bool hides keys where False.

    One fused qkv projection, softmax attention per head (:meth:`attend`), the output projection.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_mask: Optional[Tensor] = None, rows: Optional[Tensor] = None) -> Tensor:
        """x [N, T, D] -> [N, T, D], or [N, M, D] for the tokens ``rows`` [N, M] only (every token is a key)."""
        out = self.attend(self.qkv(x), key_mask)  # softmax(q kᵀ / √d) v per head, heads side by side
        return self.proj(out if rows is None else gather_rows(out, rows))

    def attend(self, qkv: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """The attention itself: qkv [N, T, 3 * D] (the fused projection's output) -> [N, T, D]
        (:func:`sdpa_attention`)."""
        return sdpa_attention(qkv, self.num_heads, key_mask)

    def weights(self, x: Tensor) -> Tensor:
        """The attention probabilities softmax(q kᵀ / √d) of every head (Vaswani et al. 2017): x [N, T, D] ->
        [N, heads, T (queries), T (keys)] float32, each row summing to 1. What :meth:`attend` weighs the values
        with, computed explicitly (for attention maps; the forward never materialises it)."""
        q, k, _ = split_heads(F.linear(x, self.qkv.weight, self.qkv.bias), self.num_heads)
        return torch.softmax((q.float() @ k.float().transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)


class DropPath(nn.Module):
    """Stochastic depth per sample: drops the residual branch with probability ``p`` in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


class Mlp(nn.Module):
    """The block's MLP, timm's ``Mlp``: fc1 -> GELU -> fc2. x [..., D] -> [..., D] (hidden width ``hidden``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (ViT, Dosovitskiy et al. 2021; timm's ``Block``): x [N, T, D] -> [N, T, D].

    ``rows`` [N, M] int64 asks for the outputs of those tokens only, [N, M, D]: they still attend to every token,
    and the projection, the residuals and the MLP run on the M rows alone (the MAE decoder's last block, whose
    loss reads the masked patches only)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, drop_path: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, key_mask: Optional[Tensor] = None, rows: Optional[Tensor] = None) -> Tensor:
        h = self.attn(self.norm1(x), key_mask, rows)
        x = x if rows is None else gather_rows(x, rows)
        x = x + self.drop_path(h)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViTEncoder(nn.Module):
    """ViT encoder with a cls token, optional register tokens and fixed sin-cos positions.

    ``forward(imgs, ids_keep)`` encodes only the visible patches; ``forward_features(imgs)``
    encodes the whole image (for probes and fine-tuning). Both return [N, 1 + T, D] after the final norm:
    the cls token then the patch tokens. ``forward_intermediates(imgs, indices)`` returns chosen blocks' raw
    outputs from one pass (for probes of every depth). ``registers`` learnable tokens (Darcet et al. 2023, "Vision
    Transformers Need Registers") follow the cls token inside the blocks, without a position embedding,
    and are dropped from the output. With 0 registers the module (parameters, RNG use, outputs) is the plain ViT.
    ``pos_embed_order`` and ``norm_eps``: see :class:`maelab.presets.ModelSpec`.
    """

    def __init__(self, img_size: int, patch_size: int, dim: int, depth: int, num_heads: int, mlp_dim: int,
                 drop_path: float = 0.0, registers: int = 0, pos_embed_order: str = "hw",
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        grid = img_size // patch_size
        self.patch_size = patch_size
        self.num_patches = grid * grid
        self.embed_dim = dim
        self.num_registers = registers
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # no parameter at all without registers: state dicts and checkpoints stay those of the plain ViT
        self.registers = nn.Parameter(torch.zeros(1, registers, dim)) if registers > 0 else None
        self.register_buffer("pos_embed", sincos_pos_embed(dim, grid, pos_embed_order).unsqueeze(0),
                             persistent=False)
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_dim, r, norm_eps) for r in rates)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)

    @classmethod
    def from_spec(cls, spec: ModelSpec, drop_path: float = 0.0) -> ViTEncoder:
        """The encoder of the architecture ``spec`` (fresh weights)."""
        return cls(spec.img_size, spec.patch_size, spec.embed_dim, spec.depth, spec.num_heads, spec.mlp_dim,
                   drop_path, spec.registers, spec.pos_embed_order, spec.norm_eps)

    def _tokens(self, imgs: Tensor) -> Tensor:
        """imgs [N, 3, H, W] -> patch tokens with positions [N, L, D]."""
        return self.patch_embed(imgs) + self.pos_embed

    def _with_prefix(self, x: Tensor) -> Tensor:
        """Patch tokens x [N, T, D] -> [N, 1 + R + T, D]: the cls token, the R registers, then x."""
        n = x.shape[0]
        prefix = [self.cls_token.expand(n, -1, -1)]
        if self.registers is not None:
            prefix.append(self.registers.expand(n, -1, -1))
        return torch.cat([*prefix, x], dim=1)

    def _drop_registers(self, x: Tensor) -> Tensor:
        """[N, 1 + R + T, D] -> [N, 1 + T, D]: the register tokens are not part of any output."""
        return x if self.registers is None else torch.cat([x[:, :1], x[:, 1 + self.num_registers:]], dim=1)

    def _encode(self, x: Tensor, keep_valid: Optional[Tensor] = None) -> Tensor:
        """x: [N, T, D] patch tokens -> [N, 1 + T, D] with the cls token, after blocks and norm.

        keep_valid: [N, T] bool, False for padding tokens, which no token attends to (their outputs are junk).
        """
        x = self._with_prefix(x)
        key_mask = None
        if keep_valid is not None:
            always = torch.ones(x.shape[0], 1 + self.num_registers, dtype=torch.bool, device=x.device)
            key_mask = torch.cat([always, keep_valid], dim=1)
        for block in self.blocks:
            x = block(x, key_mask)
        return self.norm(self._drop_registers(x))

    def forward(self, imgs: Tensor, ids_keep: Tensor, keep_valid: Optional[Tensor] = None,
                patches: Optional[Tensor] = None) -> Tensor:
        """imgs [N, 3, H, W], ids_keep [N, K] (keep_valid [N, K] bool, False = padding) -> latent [N, 1 + K, D].

        Only the visible patches are embedded (cut, gathered, projected; their positions gathered too): a
        quarter of the patch projection's work at ratio 0.75. ``patches`` [N, L, p * p * 3] is
        ``patchify(imgs)`` when the caller has it already (the MAE's loss target).
        """
        if patches is None:
            patches = patchify(imgs, self.patch_size)
        visible = gather_rows(patches, ids_keep)
        x = self.patch_embed.embed_patches(visible) + self.pos_embed[0][ids_keep]
        return self._encode(x, keep_valid)

    def forward_features(self, imgs: Tensor) -> Tensor:
        """imgs [N, 3, H, W] -> all tokens [N, 1 + L, D] (no masking)."""
        return self._encode(self._tokens(imgs))

    def forward_attention(self, imgs: Tensor, index: int = -1) -> Tensor:
        """The attention probabilities of block ``index`` (default the last) over whole images (no masking):
        imgs [N, 3, H, W] -> [N, heads, 1 + R + L, 1 + R + L] float32 (tokens: cls, the R registers, the patches in
        row-major order); query row 0 is the cls token's attention (facebookresearch/mae #187, timm #292)."""
        index = index % len(self.blocks)
        x = self._with_prefix(self._tokens(imgs))
        for block in self.blocks[:index]:
            x = block(x)
        block = self.blocks[index]
        return block.attn.weights(block.norm1(x))

    def forward_intermediates(self, imgs: Tensor, indices: Sequence[int], norm: bool = False) -> list[Tensor]:
        """The outputs of the blocks ``indices`` (0-based, as timm's) of one pass over whole images (no masking).

        imgs [N, 3, H, W] -> one [N, 1 + L, D] per index, in the order asked (cls token first, registers dropped).
        They are the raw block outputs (the residual stream), before the final norm, as timm's
        ``forward_intermediates(norm=False)``; ``norm=True`` applies the final norm to each, so that
        ``forward_intermediates(imgs, [depth - 1], norm=True)[0]`` is ``forward_features(imgs)``. The pass stops
        after the deepest block asked for. Raises IndexError for an index outside ``0 .. depth - 1``.
        """
        depth = len(self.blocks)
        if not indices or any(not 0 <= i < depth for i in indices):
            raise IndexError(f"block indices {list(indices)} are not in 0 .. {depth - 1} (the encoder has {depth} "
                             "blocks)")
        x, taken = self._with_prefix(self._tokens(imgs)), {}
        for i, block in enumerate(self.blocks[:max(indices) + 1]):
            x = block(x)
            if i in indices:
                taken[i] = self._drop_registers(x)
        return [self.norm(taken[i]) if norm else taken[i] for i in indices]


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears (and patch projection), zero biases, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, PatchEmbed):
        w = module.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(module.proj.bias)


def trunc_normal_tokens(*tokens: nn.Parameter, std: float = 0.02) -> None:
    """Initialise cls/mask tokens as MAE (normal, std 0.02)."""
    for t in tokens:
        nn.init.normal_(t, std=std)


__all__ = ["Attention", "Block", "DropPath", "Mlp", "PatchEmbed", "ViTEncoder", "flat_rows", "gather_rows",
           "init_weights", "patchify", "scatter_rows", "sdpa_attention", "sincos_pos_embed", "split_heads",
           "trunc_normal_tokens"]
