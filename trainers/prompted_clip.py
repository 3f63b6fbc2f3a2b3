"""The engine: runs a frozen open_clip CLIP block by block and applies a method's PromptPlan.

Text sequences are laid out ``[SOS] [prompts] [frozen class text ... EOT]`` and vision sequences
``[CLS] [patches] [prompts]``. The frozen pieces (SOS and class-text embeddings) are computed once
per class list and kept, as CoOp's `token_prefix`/`token_suffix` buffers. Text sequences stop at
the longest end-of-text position of the class list: attention is causal, so the tokens after it
never influence the pooled feature and dropping them is exact. What no prompt touches (the image
side of text-only methods, MoPE's conditioning feature, an unprompted text branch) comes from a
`FrozenFeatures` cache shared by the seeds of a trial (see `trainers.frozen`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.backbone import Backbone
from trainers.frozen import FrozenFeatures
from trainers.methods.base import Conditioning, Edit, PromptMethod, PromptPlan


@dataclass
class ClassTokens:
    """Frozen text pieces of a class list (C classes, R class-text tokens up to the last EOT)."""

    sos: Tensor  # (C, 1, d_t) start-of-text embedding
    rest: Tensor  # (C, R, d_t) class-text embeddings after SOS, through the last EOT
    eot: Tensor  # (C,) index of each class's EOT within `rest`


class PromptedCLIP(nn.Module):
    """A frozen CLIP plus one PromptMethod. Only `method.parameters()` are trainable."""

    def __init__(
        self,
        backbone: Backbone,
        method: PromptMethod,
        template: str,
        frozen: FrozenFeatures | None = None,
    ) -> None:
        super().__init__()
        self.clip = backbone.model
        self.tokenizer = backbone.tokenizer
        self.method = method
        self.template = template
        self._class_cache: dict[tuple[str, ...], ClassTokens] = {}  # by (template, *names)
        self._template_cache: dict[tuple[str, ...], Tensor] = {}
        self.frozen = frozen if frozen is not None else FrozenFeatures()

    def train(self, mode: bool = True) -> PromptedCLIP:
        self.method.train(mode)
        return self  # the frozen backbone always stays in eval mode

    # ---- frozen pieces -------------------------------------------------------------------
    @torch.no_grad()
    def class_tokens(self, classnames: Sequence[str]) -> ClassTokens:
        key = (self.template, *classnames)  # a target may bring its own template
        if key not in self._class_cache:
            texts = [self.method.class_text(self.template, name) for name in classnames]
            ids = self.tokenizer(texts).to(self._device)
            eot = ids.argmax(dim=-1)
            length = int(eot.max()) + 1
            emb = self.clip.token_embedding(ids[:, :length])
            self._class_cache[key] = ClassTokens(sos=emb[:, :1], rest=emb[:, 1:], eot=eot - 1)
        return self._class_cache[key]

    @torch.no_grad()
    def template_features(self, classnames: Sequence[str]) -> Tensor:
        """Normalised zero-shot text features (C, D) of the hand-written template, cached."""
        key = (self.template, *classnames)  # a target may bring its own template
        if key not in self._template_cache:
            ids = self.tokenizer([self.template.format(name) for name in classnames])
            features = self.clip.encode_text(ids.to(self._device))
            self._template_cache[key] = F.normalize(features, dim=-1)
        return self._template_cache[key]

    @property
    def _device(self) -> torch.device:
        return self.clip.logit_scale.device

    # ---- forward ---------------------------------------------------------------------------
    def forward(
        self,
        images: Tensor,
        classnames: Sequence[str],
        text_features: Tensor | None = None,
        keys: Sequence[Hashable] | None = None,
    ) -> tuple[Tensor, PromptPlan]:
        """Logits (B, C) of `images` against `classnames`, and the plan that produced them.

        `text_features` (C, D), when given, are reused instead of recomputed (evaluation).
        `keys` name the images (e.g. (task, split, index)) so that their prompt-free features
        are computed once; without keys everything is computed.
        """
        cond = self.conditioning(images, classnames, keys)
        plan = self.method.plan(cond)
        if text_features is None:
            text_features = self.encode_text(plan, classnames, cond)
        if plan.vision:
            image_features = F.normalize(self.encode_image(images, plan), dim=-1)
        else:
            image_features = self.frozen_image_features(images, keys)
        scaled = self.clip.logit_scale.exp() * image_features
        if text_features.dim() == 3:  # (N, C, D): one set per seed block (methods/stack.py)
            blocks = scaled.unflatten(0, (len(text_features), -1))
            logits = (blocks @ text_features.transpose(1, 2)).flatten(0, 1)
        else:
            logits = scaled @ text_features.T
        if self.clip.logit_bias is not None:
            logits = logits + self.clip.logit_bias
        return logits, plan

    def conditioning(
        self, images: Tensor, classnames: Sequence[str], keys: Sequence[Hashable] | None = None
    ) -> Conditioning:
        cond = Conditioning(batch_size=images.shape[0])
        if self.method.needs_image:
            cond.image_features = self.frozen_image_features(images, keys)
        if self.method.needs_class_features:
            cond.class_features = self.template_features(classnames)
        return cond

    def frozen_image_features(
        self, images: Tensor, keys: Sequence[Hashable] | None = None
    ) -> Tensor:
        """Normalised prompt-free image features (B, D), each keyed image computed once."""
        return self.frozen.rows(keys, images, self._prompt_free_image_features)

    @torch.no_grad()
    def _prompt_free_image_features(self, images: Tensor) -> Tensor:
        return F.normalize(self.encode_image(images, PromptPlan()), dim=-1)

    def text_features(self, classnames: Sequence[str], batch_size: int = 1) -> Tensor:
        """Normalised class embeddings (C, D) for a plan that does not depend on the images."""
        cond = Conditioning(batch_size=batch_size)
        if self.method.needs_class_features:
            cond.class_features = self.template_features(classnames)
        return self.encode_text(self.method.plan(cond), classnames, cond)

    def encode_text(
        self, plan: PromptPlan, classnames: Sequence[str], cond: Conditioning
    ) -> Tensor:
        if plan.text:
            features = self._text_features(plan, classnames)
        else:  # no prompt in the text branch: its features are frozen, computed once
            texts = tuple(self.method.class_text(self.template, name) for name in classnames)
            with torch.no_grad():
                features = self.frozen.block(
                    ("text", texts, plan.text_sets), lambda: self._text_features(plan, classnames)
                )
        return self.method.pool_text(features, cond)

    def _text_features(self, plan: PromptPlan, classnames: Sequence[str]) -> Tensor:
        """Normalised features (S, C, D) of every prompt set and class."""
        ct = self.class_tokens(classnames)
        sets, classes = plan.text_sets, len(classnames)
        prompts = _text_tokens(plan.text.get(0, Edit()).add, sets, classes, ct.rest)
        n_seq = sets * classes
        sos, rest = ct.sos.repeat(sets, 1, 1), ct.rest.repeat(sets, 1, 1)
        x = torch.cat([sos, prompts, rest], dim=1)
        if x.shape[1] > self.clip.positional_embedding.shape[0]:
            raise ValueError(
                f"text sequence of {x.shape[1]} tokens exceeds the backbone's context length "
                f"{self.clip.positional_embedding.shape[0]}: shorten the prompts or class names"
            )
        x = x + self.clip.positional_embedding[: x.shape[1]]
        n_prompts = prompts.shape[1]
        for layer, block in enumerate(self.clip.transformer.resblocks):
            if layer > 0 and layer in plan.text:
                add = _text_tokens(plan.text[layer].add, sets, classes, ct.rest)
                x, n_prompts = _apply(x, 1, n_prompts, plan.text[layer], add)
            x = block(x, attn_mask=_causal_mask(x.shape[1], x))
        x = self.clip.ln_final(x)
        eot = ct.eot.repeat(sets) + 1 + n_prompts
        pooled = x[torch.arange(n_seq, device=x.device), eot]
        features = _project(pooled, self.clip.text_projection)
        return F.normalize(features, dim=-1).reshape(sets, classes, -1)

    def encode_image(self, images: Tensor, plan: PromptPlan) -> Tensor:
        visual = self.clip.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # (B, grid**2, d_v)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        n_tokens, n_prompts = x.shape[1], 0
        for layer, block in enumerate(visual.transformer.resblocks):
            if layer in plan.vision:
                edit = plan.vision[layer]
                add = edit.add(x) if callable(edit.add) else edit.add  # from the layer's input
                x, n_prompts = _apply(x, n_tokens, n_prompts, edit, _vision_tokens(add, x))
            if layer == 0:
                x = visual.ln_pre(x)  # as MaPLe: layer-0 vision prompts go through ln_pre too
            x = block(x)
        pooled, _ = visual._pool(x[:, :n_tokens])  # prompts never enter the pooled feature
        return _project(pooled, visual.proj)


def _apply(x: Tensor, start: int, n_prompts: int, edit: Edit, add: Tensor) -> tuple[Tensor, int]:
    """Replace the prompt segment x[:, start:start+n_prompts] by carried + added tokens."""
    carry = n_prompts if edit.carry is None else edit.carry
    if carry > n_prompts:
        raise ValueError(f"cannot carry {carry} prompts: only {n_prompts} are present")
    end = start + n_prompts
    x = torch.cat([x[:, :start], x[:, start : start + carry], add, x[:, end:]], dim=1)
    return x, carry + add.shape[1]


def _text_tokens(add: Tensor | None, sets: int, classes: int, like: Tensor) -> Tensor:
    """Normalise a text `add` tensor to (S*C, k, d)."""
    if add is None:
        return like.new_zeros(sets * classes, 0, like.shape[-1])
    add = add.to(like.dtype)
    if add.dim() == 2:
        return add.expand(sets * classes, -1, -1)
    if add.dim() == 3:  # one prompt per set
        return add.repeat_interleave(classes, dim=0)
    return add.reshape(sets * classes, *add.shape[-2:])


def _vision_tokens(add: Tensor | None, like: Tensor) -> Tensor:
    """Normalise a vision `add` tensor to (B, k, d)."""
    if add is None:
        return like.new_zeros(like.shape[0], 0, like.shape[-1])
    add = add.to(like.dtype)
    return add.expand(like.shape[0], -1, -1) if add.dim() == 2 else add


def _causal_mask(length: int, like: Tensor) -> Tensor:
    mask = torch.full((length, length), float("-inf"), device=like.device, dtype=like.dtype)
    return mask.triu_(1)


def _project(x: Tensor, proj: Tensor | nn.Module | None) -> Tensor:
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Module) else x @ proj
