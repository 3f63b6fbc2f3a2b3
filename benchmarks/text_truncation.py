"""Text-encoder time with sequences cut at the longest end-of-text token vs the full context.

CoOp-style prompts (4 learnable tokens at layer 0) for ImageNet class names in the engine's own
`encode_text`: once as the engine runs it (sequences end at the longest EOT of the class list;
causal attention makes that exact) and once with the class text padded to the full context
length (77 tokens on CLIP), the way CoOp's reference code runs every prompt. Forward alone and
forward + backward to the prompts, alternating, best of `--repeats`.

    python benchmarks/text_truncation.py                      # ViT-B/16 text tower, CPU
    python benchmarks/text_truncation.py --classes 1000 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

from trainers.backbone import load
from trainers.configs import BackboneConfig
from trainers.engine import word_embedder
from trainers.methods.base import Conditioning
from trainers.methods.coop import CoOp, CoOpConfig
from trainers.prompted_clip import ClassTokens, PromptedCLIP


def full_length(model: PromptedCLIP, names: list[str], n_ctx: int) -> ClassTokens:
    """The class tokens of `names` padded to the context length, as CoOp's reference runs them."""
    cut = model.class_tokens(names)
    texts = [model.method.class_text(model.template, name) for name in names]
    ids = model.tokenizer(texts).to(cut.rest.device)
    context = model.clip.positional_embedding.shape[0]
    with torch.no_grad():
        emb = model.clip.token_embedding(ids[:, : context - n_ctx])
    return ClassTokens(sos=emb[:, :1], rest=emb[:, 1:], eot=cut.eot)


def seconds(model: PromptedCLIP, names: list[str], backward: bool) -> float:
    model.method.zero_grad()
    start = time.perf_counter()
    with torch.set_grad_enabled(backward):
        cond = Conditioning(batch_size=1)
        features = model.encode_text(model.method.plan(cond), names, cond)
        if backward:
            features.sum().backward()
    if features.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    backbone = load(BackboneConfig(model=args.model), device)
    cfg = CoOpConfig(prompt_length=4)
    method = CoOp(cfg, backbone.dims, word_embedder(backbone, device))
    model = PromptedCLIP(backbone, method, "a photo of a {}.").to(device)
    names = list(IMAGENET_CLASSNAMES[: args.classes])
    cut = model.class_tokens(names)
    full = full_length(model, names, cfg.prompt_length)
    key = (model.template, *names)

    def timed(tokens: ClassTokens, backward: bool) -> float:
        model._class_cache[key] = tokens
        return seconds(model, names, backward)

    with torch.no_grad():  # the cut is exact: same features either way
        cond = Conditioning(batch_size=1)
        a = model.encode_text(method.plan(cond), names, cond)
        model._class_cache[key] = full
        b = model.encode_text(method.plan(cond), names, cond)
    error = (a - b).abs().max().item()

    lengths = (
        1 + cfg.prompt_length + cut.rest.shape[1],
        1 + cfg.prompt_length + full.rest.shape[1],
    )
    head = f"{args.model} text tower, {args.classes} ImageNet class names, CoOp 4 tokens"
    print(f"{head}, {args.device}; {lengths[0]} vs {lengths[1]} tokens; max |diff| {error:.1e}")
    print("| pass | cut at longest EOT (s) | full context (s) | ratio |")
    print("|---|---|---|---|")
    for backward in (False, True):
        timed(cut, backward), timed(full, backward)  # warm-up
        cuts, fulls = [], []
        for _ in range(args.repeats):
            cuts.append(timed(cut, backward))
            fulls.append(timed(full, backward))
        name = "forward + backward" if backward else "forward"
        print(f"| {name} | {min(cuts):.3f} | {min(fulls):.3f} | {min(cuts) / min(fulls):.2f} |")


if __name__ == "__main__":
    main()
