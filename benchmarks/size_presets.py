"""Per-step cost of the size presets (issue 17, docs/sizes.md): what the demo pays at 28/64/128/256 px.

For every image side it builds what the pipeline builds from conf/ (``model=ddpm`` through the train stage's
``build_model`` with the size preset, the evaluate classifier through ``Recipe.from_config``) and times, one
torch thread, bf16 autocast as configured:

* ``train s/step``: one diffusion optimizer step (forward, backward, AdamW) at the preset's batch size;
* ``generate s/image``: DPM-Solver++ with ``generate.sampling.steps`` on a batch of 16;
* ``classifier s/step``: one evaluate-classifier training step at the preset's batch size;
* optionally (``--baseline``) the same at the pre-preset model (channels [32, 64, 64], batch 128: the starting
  point) for the sizes 64 and 128 among ``--sizes`` (at 28 px it is the preset; at 256 px it needs ~8 GB).

Times are **CPU seconds of this process** (``time.process_time``, one torch thread), as in
docs/performance.md: on the shared 2-core machine wall time measures the neighbours, CPU time the work (cache
and memory-bandwidth contention still inflate it somewhat). Sizes are timed in interleaved rounds and the median
per size is reported with its ratio to the first size measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/size_presets.py --sizes 28 64 128 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthgen.config import compose  # noqa: E402
from synthgen.metrics.classifier import Recipe, _augment, build_model as build_classifier  # noqa: E402
from synthgen.stages.train import build_model, sized_model_config  # noqa: E402

CLASSES = ["normal", "nodule", "effusion", "pneumothorax"]


def _diffusion_case(model_cfg: dict, side: int, baseline: bool):
    shape = (1, side, side)
    cfg = dict(sized_model_config(model_cfg, shape))
    if baseline:
        cfg.update(channels=[32, 64, 64], blocks_per_level=1, batch_size=128)
    torch.manual_seed(0)
    model = build_model(cfg, CLASSES, shape)
    opt = torch.optim.AdamW(model.net.parameters(), lr=1e-3)
    bs = int(cfg["batch_size"])
    x, y = torch.rand(bs, *shape), torch.randint(0, len(CLASSES), (bs,))
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        t = torch.randint(0, 1000, (bs,), generator=g)
        loss = model.diffusion_loss(x, y, t, torch.randn(x.shape, generator=g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return model, step, cfg


def _classifier_case(ecfg, side: int):
    recipe = Recipe.from_config(ecfg, image_shape=(1, side, side))
    torch.manual_seed(0)
    net = build_classifier(recipe, 1, len(CLASSES))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x, y = torch.rand(recipe.batch_size, 1, side, side), torch.randint(0, len(CLASSES), (recipe.batch_size,))
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
            loss = F.cross_entropy(net(_augment(x, recipe, gen)).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, recipe


def _time(fn, reps: int) -> float:
    """CPU seconds per call of ``fn`` (one thread: the work, not the neighbours' share of the cores)."""
    t = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t) / reps


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 64, 128])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2, help="steps timed per round and size")
    ap.add_argument("--baseline", action="store_true", help="also time the pre-preset model at every size")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = compose([])
    from omegaconf import OmegaConf

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    ecfg = OmegaConf.to_container(cfg.evaluate.classifier, resolve=True)
    sampling = {k: v for k, v in OmegaConf.to_container(cfg.generate.sampling, resolve=True).items()
                if k in ("sampler", "steps", "guidance")}
    cases = {}
    for s in args.sizes:
        for base in ([False, True] if args.baseline and s in (64, 128) else [False]):
            model, step, mcfg = _diffusion_case(model_cfg, s, base)
            labels, seeds = torch.arange(16) % len(CLASSES), torch.arange(16)

            def gen(model=model) -> None:
                with torch.no_grad():
                    model.generate(labels, seeds, **sampling)

            name = f"{s}{' baseline' if base else ''}"
            cases[name] = {"train": step, "gen": gen, "cfg": mcfg,
                           "params": sum(p.numel() for p in model.net.parameters())}
            if not base:
                cases[name]["cls"], cases[name]["recipe"] = _classifier_case(ecfg, s)
            step()  # warm-up (oneDNN primitive creation)
            if not base:
                cases[name]["cls"]()
    times: dict[str, dict[str, list[float]]] = {n: {"train": [], "gen": [], "cls": []} for n in cases}
    for r in range(args.rounds):
        for n, c in cases.items():
            times[n]["train"].append(_time(c["train"], args.reps))
            times[n]["gen"].append(_time(c["gen"], 1) / 16)
            if "cls" in c:
                times[n]["cls"].append(_time(c["cls"], args.reps))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    ref = {k: statistics.median(v) for k, v in times[str(args.sizes[0])].items()}
    print("| size | channels / blocks / batch | params | train s/step (x 28 px) | generate s/image (x) | "
          "classifier width/stages/batch | classifier s/step (x) |")
    print("|---|---|---|---|---|---|---|")
    for n, c in cases.items():
        m = {k: statistics.median(v) for k, v in times[n].items() if v}
        mc = c["cfg"]
        rec = c.get("recipe")
        cls = (f"{rec.width}/{rec.stages}/{rec.batch_size} | {m['cls']:.3f} ({m['cls'] / ref['cls']:.1f}x)"
               if rec else "- | -")
        print(f"| {n} | {mc['channels']} / {mc['blocks_per_level']} / {mc['batch_size']} | {c['params'] / 1e6:.2f} M"
              f" | {m['train']:.3f} ({m['train'] / ref['train']:.1f}x) | {m['gen']:.4f} ({m['gen'] / ref['gen']:.1f}x)"
              f" | {cls} |")


if __name__ == "__main__":
    main()
