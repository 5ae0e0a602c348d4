"""Does ``auto`` pick the faster precision on this machine? bf16 autocast vs float32 training steps.

``model.autocast``, ``autoencoder.autocast`` and ``evaluate.classifier.bf16`` default to ``auto``: bf16 where
:func:`synthgen.precision.native_bf16` says the device has it natively, float32 elsewhere. This times one
training step (forward, backward, optimizer) of each network synthgen trains by default, as ``conf/`` builds
it for 1x28x28 images (the demo and MedMNIST size), in float32 and in bf16, in the same run, and reports the
bf16 speed-up (fp32 seconds / bf16 seconds) and whether ``auto`` chose the faster one.

    python benchmarks/bf16_auto.py [--threads 1] [--repeats 5]

Measured (CPU seconds per step, one thread, ``--repeats 5``):

- AMD EPYC, AVX2 only (no avx512_bf16; session 10), preset batches (ddpm 128, cgan 64, classifier 128): ddpm
  fp32 1.490 s, bf16 19.917 s (0.07x); cgan 0.512 s vs 4.689 s (0.11x); evaluate classifier 0.248 s vs 3.319 s
  (0.07x). bf16 is emulated there; ``auto`` runs float32.
- Earlier on an AMD EPYC with avx512_bf16: the evaluate classifier 1.66x faster in bf16
  (``benchmarks/evaluate_classifier.py``), the cGAN 1.35x (``conf/model/cgan.yaml``); ``auto`` runs bf16.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import machine, time_call  # noqa: E402
from synthgen.config import compose  # noqa: E402
from synthgen.metrics.classifier import Recipe, _augment, build_model as build_classifier  # noqa: E402
from synthgen.precision import native_bf16  # noqa: E402
from synthgen.stages.train import build_model  # noqa: E402

SHAPE = (1, 28, 28)
CLASSES = ["c0", "c1", "c2", "c3"]


def generator_step(model_group: str, batch: int | None = None) -> Callable[[bool], Callable[[], None]]:
    """A step factory for the ``conf/model/<model_group>`` generator: ``factory(bf16)`` -> one training step
    (``batch``: images per step; None = the model's preset for 28 px)."""
    cfg = compose([f"model={model_group}"], config_dir=REPO / "conf")

    def factory(bf16: bool) -> Callable[[], None]:
        torch.manual_seed(0)
        m = build_model(cfg.model, CLASSES, SHAPE)
        m.hparams.autocast = bf16
        n = batch or _preset_batch(cfg.model)
        g = torch.Generator().manual_seed(0)
        x = torch.rand((n, *SHAPE), generator=g) * 2 - 1
        y = torch.randint(0, len(CLASSES), (n,), generator=g)
        if model_group == "ddpm":
            opt = torch.optim.AdamW(m.net.parameters(), 1e-3)
            t = torch.randint(0, int(m.hparams.num_timesteps), (n,), generator=g)

            def step() -> None:
                loss = F.mse_loss(m(x, t, y), x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        else:  # cgan: one D and one G update with the module's own losses (as benchmarks/cases/gan.py's bare loop)
            hp = m.hparams
            opt_g = torch.optim.Adam(m.generator.parameters(), lr=hp.lr_g, betas=tuple(hp.betas))
            opt_d = torch.optim.Adam(m.discriminator.parameters(), lr=hp.lr_d, betas=tuple(hp.betas))

            def step() -> None:
                z, y_fake, fake = m.fake_batch(y, generator=g)
                loss_d = m.discriminator_loss(x, y, fake.detach(), y_fake, generator=g, fake_generator=g)[0]
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                loss_g = m.generator_loss(fake, y_fake, z, generator=g)[0]
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
        return step

    return factory


def _preset_batch(model_cfg) -> int:
    """The batch the train stage uses for 28 px (``model.batch_size``, else the size preset's)."""
    from synthgen.stages.train import sized_model_config

    return int(sized_model_config(model_cfg, SHAPE)["batch_size"])


def classifier_step(bf16: bool, batch: int | None = None) -> Callable[[], None]:
    """One training step of the evaluate classifier as ``conf/evaluate`` sizes it for 28 px."""
    torch.manual_seed(0)
    extra = {"batch_size": batch} if batch else {}
    recipe = Recipe.from_config(compose((), config_dir=REPO / "conf").evaluate.classifier, image_shape=SHAPE,
                                bf16=bf16, **extra)
    model = build_classifier(recipe, SHAPE[0], len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(recipe.batch_size, *SHAPE, generator=gen)
    y = torch.randint(0, len(CLASSES), (recipe.batch_size,), generator=gen)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(_augment(x, recipe, gen))
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, help="images per step for every network (default: each one's preset)")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    auto = native_bf16("cpu")
    facts = machine()
    print(f"cpu: {facts.get('cpu')}; native bf16 (auto -> bf16): {auto}; {args.threads} thread(s)")
    rows = []
    networks = (("ddpm (conf/model/ddpm)", generator_step("ddpm", args.batch)),
                ("cgan (conf/model/cgan)", generator_step("cgan", args.batch)),
                ("evaluate classifier", lambda bf16: classifier_step(bf16, args.batch)))
    for name, factory in networks:
        secs = {}
        for bf16 in (False, True):
            secs[bf16] = time_call(factory(bf16), warmup=min(2, args.repeats), repeats=args.repeats,
                                   clock=time.process_time).median
        speedup = secs[False] / secs[True]
        picked_faster = (speedup > 1) == auto
        rows.append({"network": name, "fp32_s": round(secs[False], 4), "bf16_s": round(secs[True], 4),
                     "bf16_speedup": round(speedup, 2), "auto": "bf16" if auto else "fp32",
                     "auto_is_faster": picked_faster})
        print(f"{name:26s} fp32 {secs[False]:.3f} s/step  bf16 {secs[True]:.3f} s/step  bf16 speed-up "
              f"{speedup:.2f}x  auto -> {'bf16' if auto else 'fp32'} ({'the faster' if picked_faster else 'SLOWER'})")
    if args.out:
        args.out.write_text(json.dumps({"machine": facts, "threads": args.threads, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
