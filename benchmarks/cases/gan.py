"""Benchmark case ``gan``: training and generation images/s of ``model=cgan`` on BloodMNIST (3x28x28, 8 classes).

Training (``conf/model/cgan.yaml`` defaults: batch 64, bf16 autocast, mode-seeking pairs; one batch = one
discriminator step + one generator step + the generator EMA update):

* ``Lightning`` (ours): ``Trainer.fit`` of :class:`synthgen.models.gan.ConditionalGAN` (manual optimization,
  per-step logging) on the prepared training split; a callback stamps the clock at every batch start, so a
  batch's time is everything between two batch starts (data loading, hooks, logging, the step itself);
  ``Trainer`` setup is excluded.
* ``bare torch loop`` (reference): the module's own ``fake_batch`` / ``discriminator_loss`` /
  ``generator_loss`` and EMA update with the same Adam optimizers, stepped in a plain loop over the same
  DataLoader: the ratio is Lightning's per-batch overhead.

Both start from the same seeded initialization. After ``warmup`` batches, the timed batches are grouped into
5 repeats; median and spread over the repeats. Clock: CPU seconds of this process (1 torch thread unless
``$SYNTHGEN_BENCH_THREADS``).

Generation: the cGAN's EMA generator (``generate()``, after its standing BatchNorm statistics) vs the
diffusion model's default sampler (DPM-Solver++ 10 steps, :func:`benchmarks.fixtures.diffusion_model`, the
same run's checkpoint) on the same (label, seed) plan, 4 chunks of ``n / 4`` images each (the repeats).
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks import fixtures
from benchmarks.harness import Context, Row, Timing, cpu_clock, set_threads, sync

CASE = "gan"
REPEATS = 5


class _BatchClock:
    """Lightning callback: clock reading at every ``on_train_batch_start`` (and at the end of fit)."""

    def __init__(self, clock):
        import lightning as L

        outer = self

        class CB(L.Callback):
            def on_train_batch_start(self, *a, **k):
                outer.stamps.append(outer.clock())

            def on_train_end(self, *a, **k):
                outer.stamps.append(outer.clock())

        self.clock, self.stamps, self.callback = clock, [], CB()


def lightning_batches(ctx: Context, batches: int) -> tuple[list[float], "ConditionalGAN"]:  # noqa: F821
    """Seconds per training batch of ``Trainer.fit`` on the cGAN (``batches`` batches), and the model."""
    import lightning as L

    L.seed_everything(0, verbose=False)
    model = fixtures.build(ctx, "cgan")
    batch = int(_batch_size())
    bc = _BatchClock(cpu_clock(ctx.device))
    accel = "gpu" if ctx.device.startswith("cuda") else "cpu"
    trainer = L.Trainer(max_steps=2 * batches, max_epochs=-1, accelerator=accel, devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=25,
                        callbacks=[bc.callback])
    trainer.fit(model, fixtures.train_loader(ctx, batch))
    return [b - a for a, b in zip(bc.stamps, bc.stamps[1:])], model


def bare_batches(ctx: Context, batches: int) -> list[float]:
    """Seconds per batch of the same cGAN training step in a plain torch loop (no Lightning)."""
    import lightning as L

    L.seed_everything(0, verbose=False)
    model = fixtures.build(ctx, "cgan").to(ctx.device).train()
    hp = model.hparams
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=hp.lr_g, betas=tuple(hp.betas))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=hp.lr_d, betas=tuple(hp.betas))

    clock, stamps = cpu_clock(ctx.device), []
    loader = fixtures.train_loader(ctx, int(_batch_size()))
    while len(stamps) <= batches:
        for real, y in loader:
            stamps.append(clock())
            if len(stamps) > batches:
                break
            real, y = real.to(ctx.device) * 2 - 1, y.to(ctx.device)
            z, y_fake, fake = model.fake_batch(y)  # the module's own loss code, called without Lightning
            loss_d = model.discriminator_loss(real, y, fake.detach(), y_fake)[0]
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = model.generator_loss(fake, y_fake, z)[0]
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            model.update_ema()
            sync(ctx.device)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def _batch_size() -> int:
    from omegaconf import OmegaConf

    return int(OmegaConf.load(fixtures.REPO / "conf" / "model" / "cgan.yaml").batch_size)


def _grouped(per_batch: list[float], warmup: int) -> Timing:
    """Timed batches (after ``warmup``) in ``REPEATS`` groups: seconds per batch of each group."""
    timed = per_batch[warmup:]
    size = max(1, len(timed) // REPEATS)
    return Timing([statistics.fmean(timed[i:i + size]) for i in range(0, size * REPEATS, size)])


def generation(ctx: Context, model, labels, seeds, **kw) -> Timing:
    clock = cpu_clock(ctx.device)
    model.generate(labels[:4], seeds[:4], **kw)  # warm-up
    secs = []
    for part in torch.arange(len(labels)).chunk(4):
        t0 = clock()
        model.generate(labels[part], seeds[part], **kw)
        sync(ctx.device)
        secs.append((clock() - t0) / len(part))
    return Timing(secs)


def run(ctx: Context) -> list[Row]:
    threads = set_threads(ctx)
    warmup, timed = (3, 10) if ctx.quick else (10, 50)
    batch = _batch_size()
    t0 = time.perf_counter()
    per_batch, gan = lightning_batches(ctx, warmup + timed)
    ours = _grouped(per_batch, warmup)
    bare = _grouped(bare_batches(ctx, warmup + timed), warmup)
    note = (f"cgan defaults, batch {batch}, {threads} thread(s), {warmup} warm-up + {timed} timed batches "
            f"in {REPEATS} repeats; images per CPU second of training (D step + G step + EMA)")
    rows = [Row(CASE, "bare torch loop", "train images/s", batch / bare.median, "img/s", bare.spread, note=note),
            Row(CASE, "Lightning ConditionalGAN", "train images/s", batch / ours.median, "img/s", ours.spread,
                reference="bare torch loop", note="ratio < 1 = Lightning's per-batch overhead")]
    print(f"   training timed in {time.perf_counter() - t0:.0f} s wall", flush=True)

    n = 256 if ctx.quick else 1024
    gan = gan.to(ctx.device)  # the Lightning run's model (generation speed does not depend on the weights)
    gan.prepare_for_sampling(seed=0)
    diffusion, origin = fixtures.diffusion_model(ctx)
    k = len(gan.class_names)
    labels, seeds = torch.arange(n) % k, torch.arange(n) + 10_000
    t_gan = generation(ctx, gan, labels, seeds)
    n_diff = max(8, n // 8)  # DPM++ 10 is ~100x slower per image: fewer images, same (label, seed) prefix
    t_diff = generation(ctx, diffusion, labels[:n_diff], seeds[:n_diff], sampler="dpmpp", steps=10)
    ref = "diffusion DPM-Solver++ 10"
    rows += [Row(CASE, ref, "generate images/s", 1 / t_diff.median, "img/s", t_diff.spread,
                 note=f"{n_diff} images in 4 chunks, guidance 1, {origin}"),
             Row(CASE, "cGAN EMA generator", "generate images/s", 1 / t_gan.median, "img/s", t_gan.spread,
                 reference=ref, note=f"{n} images in 4 chunks (one generator call each), {threads} thread(s)")]
    return rows

