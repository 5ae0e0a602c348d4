"""Costs at size (issue 17 item 5): what training, sampling, evaluation, the privacy audit and the export cost at
28/64/128/256 px (2D) and 32^3/64^3 voxels (3D), next to MONAI's equivalent measured in the same run.

    python benchmarks/size_costs.py --quick            # ~10 min of CPU at one thread; -> benchmarks/size_costs.json
    python benchmarks/size_costs.py --quick --docs     # ... and the "Costs at size" section of docs/performance.md
    python benchmarks/size_costs.py --quick --sizes 128 --parts audit --heavy-sizes 128 --append   # one more row
    python benchmarks/size_costs.py --cuda             # adds GPU rows when torch sees a GPU (benchmarks only)
    python benchmarks/size_costs.py --child 2d:64:train --quick    # one part, its RESULT line only

``--quick`` runs the audit and evaluate parts at 28 and 64 px only (``--heavy-sizes``): the 2D audit costs
minutes of CPU at 128 px.

Every measurement runs in its own child process (``--child KIND:SIZE:PART``), so its peak RSS is its own
(``ru_maxrss`` of the child) and a failure or timeout of one part leaves the others standing. One torch thread
per child (``$SYNTHGEN_BENCH_THREADS`` to change); on a CPU the clock is CPU seconds of the child (the machine is
shared: wall time measures the neighbours), on a GPU wall seconds after ``cuda.synchronize``.

Our models are built as ``dvc repro`` builds them: the ``model`` and ``autoencoder`` groups of ``conf/`` composed
(:func:`synthgen.config.compose`), sized by :func:`synthgen.stages.train.sized_model_config` (the
``model.presets`` row for the image side, ``model.presets3d`` for volumes, the latent side for latent diffusion).
Weights are untrained (throughput does not depend on them). Every variant of a shape sees the same batch.

Parts per 2D size ``S`` (grey images, 4 classes):

* ``train``: diffusion training images/s (forward + MSE + backward + AdamW) of our pixel UNet (the
  ``model.presets`` row for ``S``; from 128 px the pipeline trains the latent model instead: ``model.latent:
  null``) vs MONAI ``DiffusionModelUNet`` with the same channel multipliers and the closest parameter count, both
  with the preset's bf16 autocast setting. From 64 px also the latent case, encoding inside the timed step (no
  gradient): ours :class:`~synthgen.models.latent.LatentDiffusionModule` (its ``AutoencoderKL`` from
  ``conf/autoencoder``, UNet sized for the latent side) vs the same ``AutoencoderKL`` + a MONAI latent UNet matched
  to ours, i.e. ``LatentDiffusionInferer`` arithmetic with class labels. (The train stage encodes the training
  set once up front: ``benchmarks/latent_speed.py`` times that.)
* ``sample``: images/s of 10-step sampling: ours ``DiffusionModule.generate`` (DPM-Solver++ 10, the default of
  ``conf/generate``; latent: + decode) vs MONAI's ``DDIMScheduler`` 10 steps on the matched UNet (latent: +
  ``AutoencoderKL`` decode).
* ``audit``: :func:`synthgen.privacy.audit.run_audit` (default ``privacy`` config) on ``n`` synthetic vs ``n``
  training images (real PneumoniaMNIST images upsampled to ``S``, disjoint thirds): seconds and per pair.
* ``evaluate``: the evaluate stage on a prepared PneumoniaMNIST at ``S`` (``data.image_size=S``) with the test
  split as the cohort, arms ``trtr,tstr``, one seed, ``classifier.steps``/``features.steps`` reduced (in the note).
* ``export``: the shard writer (:func:`synthgen.export.shard_writer.write_shards`) MB/s on ``n`` images vs a
  plain ``tarfile`` of the same members.

3D parts (``V`` = 32, 64; one channel, 4 classes): ``train``/``sample`` as in 2D for our
``DiffusionModule`` on ``(1, V, V, V)`` (``ClassConditionalUNet(spatial_dims=3)``, ``model.presets3d``) vs MONAI
``DiffusionModelUNet(spatial_dims=3)``, and the latent case (ours with ``model.latent=true``: auto is off for
volumes) vs MONAI's 3D ``AutoencoderKL`` + latent UNet; ``audit`` (the volume audit, :mod:`synthgen.privacy.volume`)
and ``export`` (``.npy`` + NIfTI + preview per sample, :mod:`synthgen.export.volume`) on procedural chest CT
phantoms (:mod:`synthgen.data.phantom3d`) rendered at ``V^3``; 3D ``evaluate`` is not measured (it needs a
prepared 3D cohort). Results: ``benchmarks/size_costs.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.harness import cpu_clock, time_call  # noqa: E402

SIZES_2D, SIZES_3D, CLASSES = (28, 64, 128, 256), (32, 64), 4


# ------------------------------------------------------------------------------------------------ helpers
def _threads() -> int:
    import torch

    n = int(os.environ.get("SYNTHGEN_BENCH_THREADS", "1"))
    torch.set_num_threads(n)
    return n


def _timed(fn: Callable[[], Any], device: str, repeats: int) -> float:
    """Median seconds per call after one warm-up (CPU seconds on CPU, wall on GPU)."""
    return time_call(fn, 1, repeats, device, cpu_clock(device)).median


def _nparams(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _ours(shape: list[int], latent: bool = False):
    """``(model, note)``: our diffusion model for images ``shape`` ``(C, H, W)`` or ``(C, D, H, W)`` as the train
    stage builds it (conf/ composed, :func:`~synthgen.stages.train.sized_model_config`); ``latent``: a
    :class:`~synthgen.models.latent.LatentDiffusionModule` around an untrained ``conf/autoencoder`` model, its
    UNet sized for the latent shape (``benchmarks/latent_speed.py`` builds it the same way)."""
    import torch
    from omegaconf import OmegaConf

    from synthgen.config import compose
    from synthgen.models.autoencoder import AutoencoderModule
    from synthgen.models.diffusion import DiffusionModule
    from synthgen.models.latent import LatentDiffusionModule
    from synthgen.stages.train import model_kwargs, sized_model_config

    cfg = compose(config_dir=REPO / "conf")
    model_cfg, ae_cfg = OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.autoencoder)
    names, ae = [f"c{i}" for i in range(CLASSES)], None
    if latent:
        known = inspect.signature(AutoencoderModule.__init__).parameters
        ae = AutoencoderModule(shape, **{k: v for k, v in ae_cfg.items() if k in known and k != "image_shape"})
    kw = {k: v for k, v in model_kwargs(sized_model_config(model_cfg, ae.latent_shape if ae else shape)).items()
          if k != "_target_"}
    torch.manual_seed(0)
    m = (DiffusionModule(names, shape, **kw) if ae is None else
         LatentDiffusionModule(names, shape, autoencoder=dict(ae.hparams), latent_scale=1.0, **kw))
    sp = "x".join(map(str, m.sample_shape))
    return m, (f"UNet on {sp}: channels={kw['channels']} blocks={kw['blocks_per_level']}, "
               f"{_nparams(m.net) / 1e6:.2f} M parameters" + (f"; AutoencoderKL channels={ae_cfg['channels']}"
                                                              if ae else ""))


def _monai_unet(dims: int, in_ch: int, channels: list[int], blocks: int, classes: int | None):
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(spatial_dims=dims, in_channels=in_ch, out_channels=in_ch, num_res_blocks=blocks,
                              channels=channels, attention_levels=[False] * len(channels), norm_num_groups=8,
                              num_class_embeds=classes)


def _matched_monai(dims: int, in_ch: int, mult: list[int], target: int, classes: int | None):
    """MONAI UNet with ``mult`` channel multipliers whose parameter count is closest to ``target``."""
    best = None
    for blocks in (1, 2):
        for width in range(8, 257, 8):
            m = _monai_unet(dims, in_ch, [width * k for k in mult], blocks, classes)
            n = sum(p.numel() for p in m.parameters())
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, m, f"width={width} blocks={blocks}")
            if n > 1.2 * target:
                break
    return best[1], best[2] + f", {best[0] / 1e6:.2f} M parameters"


def _step(net_call, params, x, y, bf16: bool, device: str, encode=None) -> Callable[[], None]:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    dev_type = "cuda" if device == "cuda" else "cpu"

    def step() -> None:
        z = x
        if encode is not None:
            with torch.no_grad(), torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
                z = encode(x).float()
        t = torch.randint(0, 1000, (z.shape[0],), generator=g).to(z.device)
        noise = torch.randn(z.shape, generator=g).to(z.device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
            out = net_call(z + noise, t, y)
        F.mse_loss(out.float(), noise).backward()
        opt.step()

    return step


def _ddim_sample(net_call, shape, y, device: str, bf16: bool, steps: int = 10, decode=None):
    import torch
    from monai.networks.schedulers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(steps)
    dev_type = "cuda" if device == "cuda" else "cpu"

    @torch.no_grad()
    def run() -> None:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
        for t in sched.timesteps:
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
                out = net_call(x, torch.full((shape[0],), int(t), device=device), y).float()
            x, _ = sched.step(out, t, x)
        if decode is not None:
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
                decode(x)

    return run


def _pneumonia(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` PneumoniaMNIST training images ``(n, 1, size, size)`` uint8 (bilinear) and labels; seeded random
    smooth images when the shared data is absent."""
    import torch
    import torch.nn.functional as F

    p = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data")) / "pneumoniamnist_imbalanced.npz"
    rng = np.random.default_rng(seed)
    if p.exists():
        with np.load(p) as z:
            x, y = z["train_images"], z["train_labels"].reshape(-1)
        idx = rng.permutation(len(x))[:n]
        x, y = x[idx][:, None], y[idx].astype(np.int64)
    else:
        x = rng.integers(0, 255, (n, 1, 28, 28)).astype(np.uint8)
        y = rng.integers(0, 2, n).astype(np.int64)
    t = F.interpolate(torch.from_numpy(x.astype(np.float32) / 255), size=(size, size), mode="bilinear")
    return np.rint(t.clamp(0, 1).numpy() * 255).astype(np.uint8), y


def _phantoms(n: int, side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` chest CT phantoms (:mod:`synthgen.data.phantom3d`, classes normal/nodule) ``(n, 1, V, V, V)`` uint8
    (HU window [-1000, 1000], the ``demo3d`` one) rendered at ``V = side`` over a 320 mm field, and labels."""
    from synthgen.data.phantom3d import FINDINGS_3D, render, sample_chest

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int64)
    hu = [render(sample_chest(FINDINGS_3D[k], rng), (side,) * 3, (320 / side,) * 3) for k in y]
    return np.rint(np.clip((np.stack(hu)[:, None] + 1000) / 2000, 0, 1) * 255).astype(np.uint8), y


# ---------------------------------------------------------------------------------------------- the parts
def part_train_sample(dims: int, size: int, device: str, quick: bool, sample: bool) -> list[dict]:
    """Ours vs MONAI, pixel space and (from 64 px, and for volumes) latent space: train or sample rows."""
    import torch

    from synthgen.precision import use_bf16

    unit, what, dev = ("images/s" if dims == 2 else "volumes/s"), ("sample" if sample else "train"), torch.device(device)
    if dims == 2:
        batch = {28: 64, 64: 32, 128: 8, 256: 2}[size] // (2 if quick else 1) or 1
    else:
        batch = {32: 2, 64: 1}[size]
    shape = [1, *([size] * dims)]
    g = torch.Generator().manual_seed(0)
    x = torch.rand((batch, *shape), generator=g).to(dev) * 2 - 1
    y = torch.randint(0, CLASSES, (batch,), generator=g).to(dev)
    n = max(1, batch // 2) if sample else batch
    labels, seeds = torch.arange(n) % CLASSES, torch.arange(n)
    rows: list[dict] = []
    for latent in (False, True) if size >= 64 or dims == 3 else (False,):
        ours, note = _ours(shape, latent)
        ours = ours.to(dev)
        bf16, channels = use_bf16(ours.hparams.autocast, dev.type), [int(c) for c in ours.hparams.channels]
        in_ch = int(ours.sample_shape[0])
        monai, mcfg = _matched_monai(dims, in_ch, [c // channels[0] for c in channels], _nparams(ours.net),
                                     CLASSES + 1)
        monai = monai.to(dev)
        if not latent:
            pre = "model.presets3d" if dims == 3 else "model.presets"
            note += f"; {pre} row for {size}" + ("; the pipeline trains the latent model at this size"
                                                 if dims == 2 and size >= 128 else "")
            name, mname, ae = "ours", "MONAI DiffusionModelUNet", None
        else:
            note += (f"; model.latent=true{'' if dims == 2 and size >= 128 else ' (auto: off at this size)'}"
                     + ("" if sample else "; encoding in the timed step, as MONAI's"))
            ae = ours.autoencoder.net  # ours wraps MONAI's AutoencoderKL (conf/autoencoder): the same network
            mcfg = f"the same AutoencoderKL; latent UNet {mcfg}"
            name, mname = "ours latent", "MONAI AutoencoderKL + latent UNet"
        if not sample:
            encode = None if ae is None else ae.encode_stage_2_inputs
            cases = [(name,
                      _step(lambda a, t, c: ours.net(a, t, c), ours.net.parameters(), x, y, bf16, device,
                            encode=(lambda a: ours.images_to_x0((a + 1) / 2)) if latent else None), note),
                     (mname, _step(lambda a, t, c: monai(a, t, class_labels=c), monai.parameters(), x, y, bf16,
                                   device, encode=encode), mcfg)]
        else:
            decode = None if ae is None else ae.decode_stage_2_outputs
            cases = [(name + (" (DPM-Solver++ 10 + decode)" if latent else " (DPM-Solver++ 10)"),
                      lambda: ours.generate(labels, seeds, steps=10), note),
                     (mname + (" (DDIM 10 + decode)" if latent else " (DDIM 10)"),
                      _ddim_sample(lambda a, t, c: monai(a, t, class_labels=c), (n, *ours.sample_shape), y[:n],
                                   device, bf16, decode=decode), mcfg)]
        for variant, fn, nt in cases:
            s = _timed(fn, device, 2 if quick else 5)
            rows.append({"part": what, "variant": variant, "value": round(n / s, 3), "unit": unit,
                         "note": f"{nt}; batch {n}, bf16={bf16}"})
    return rows


def part_audit(dims: int, size: int, quick: bool) -> list[dict]:
    from synthgen.privacy.audit import run_audit
    from synthgen.privacy.cli import default_privacy_config
    from synthgen.privacy.inputs import ImageSet

    n = (100 if quick else 1000) if dims == 2 else (30 if quick else 200)
    x, y = _pneumonia(3 * n, size) if dims == 2 else _phantoms(3 * n, size)
    f = x.astype(np.float32) / 255

    def mk(a, b, name):
        return ImageSet(a, b, np.array([f"{name}{i}" for i in range(len(a))]), "uint8", name)

    cfg = default_privacy_config(["threads=1"])
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.process_time()
        run_audit(mk(f[:n], y[:n], "t"), mk(f[2 * n:], y[2 * n:], "h"), mk(f[n:2 * n], y[n:2 * n], "s"), cfg,
                  cache_dir=cache)
        s = time.process_time() - t0
    return [{"part": "audit", "variant": "ours", "value": round(s, 2), "unit": "CPU s",
             "note": f"{n} synthetic x {n} training (+{n} holdout) "
                     f"{f'PneumoniaMNIST at {size}px' if dims == 2 else f'CT phantoms at {size}^3'}, default privacy "
                     f"config; {1e6 * s / (n * n):.2f} us per pair"}]


def part_evaluate(dims: int, size: int, quick: bool) -> list[dict]:
    if dims == 3:
        return [{"part": "evaluate", "variant": "ours", "value": None, "unit": "s",
                 "note": "not measured (needs a prepared 3D cohort; not wired into this harness)"}]
    from synthgen.config import compose
    from synthgen.io import save_npz
    from synthgen.stages.evaluate import evaluate
    from synthgen.stages.prepare import prepare

    data = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data")) / "pneumoniamnist_imbalanced.npz"
    if not data.exists():
        return [{"part": "evaluate", "variant": "ours", "value": None, "unit": "s", "note": "shared data absent"}]
    steps = 20 if quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        ov = ["data=medmnist", f"data.path={data}", f"data.image_size={size}", f"paths.prepared={tmp}/prepared",
              f"paths.metrics={tmp}/metrics", f"paths.reports={tmp}/reports", f"evaluate.cache_dir={tmp}/cache",
              f"evaluate.cohort={tmp}/cohort.npz", "evaluate.utility.arms=[trtr,tstr]", "evaluate.utility.seeds=[0]",
              f"evaluate.classifier.steps={steps}", f"evaluate.features.steps={steps}", "evaluate.threads=1",
              f"evaluate.classifier.batch_size={32 if quick else 128}"]
        cfg = compose(ov)
        prepare(cfg)
        with np.load(f"{tmp}/prepared/test.npz") as z:
            save_npz(Path(tmp) / "cohort.npz", images=z["images"], labels=z["labels"])
        t0 = time.process_time()
        evaluate(cfg)
        s = time.process_time() - t0
    return [{"part": "evaluate", "variant": "ours", "value": round(s, 2), "unit": "CPU s",
             "note": f"PneumoniaMNIST prepared at {size}px, test split as cohort, arms trtr+tstr, 1 seed, "
                     f"classifier/features {steps} steps, batch {32 if quick else 128}"}]


def part_export(dims: int, size: int, quick: bool) -> list[dict]:
    from benchmarks.cases.export import _members, _plain_tar
    from synthgen.export.audited import AuditedCohort
    from synthgen.export.shard_writer import write_shards

    n = (200 if quick else 1000) if dims == 2 else (20 if quick else 100)
    images, labels = _pneumonia(n, size) if dims == 2 else _phantoms(n, size)
    meta = {"generator": "bench", "model_target": "bench.Model", "checkpoint_sha256": "0" * 64,
            "config_hash": "bench", "synthgen_version": "0.1.0", "class_names": ["a", "b", "c", "d"],
            "privacy": {"passed": True}}
    cohort = AuditedCohort(images=images, labels=labels.astype(np.int64), seeds=np.arange(n, dtype=np.int64),
                           index=np.arange(n, dtype=np.int64), privacy={"nn_distance": np.zeros(n, np.float32)},
                           meta=meta)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours"
        out.mkdir()
        t0 = time.process_time()
        write_shards(cohort, out, "bench", max_samples=1000, max_bytes=None,
                     spacing=None if dims == 2 else [320 / size] * 3)
        s = time.process_time() - t0
        shards = sorted(out.glob("*.tar"))
        mb = sum(p.stat().st_size for p in shards) / 1e6
        members = _members(shards)
        t0 = time.process_time()
        _plain_tar(members, Path(tmp) / "plain")
        s_ref = max(time.process_time() - t0, 1e-6)
    shape = "x".join(str(v) for v in images.shape[1:])
    return [{"part": "export", "variant": "ours (write_shards)", "value": round(mb / max(s, 1e-6), 2), "unit": "MB/s",
             "note": f"{n} {'PneumoniaMNIST images' if dims == 2 else 'CT phantoms (npy + nii.gz + preview)'} "
                     f"{shape} uint8, {mb:.1f} MB of shards"},
            {"part": "export", "variant": "plain tarfile, same members", "value": round(mb / s_ref, 2),
             "unit": "MB/s", "note": "reference"}]


def child(spec: str, quick: bool) -> None:
    kind, size, part = spec.split(":")
    dims, size = (2 if kind == "2d" else 3), int(size)
    device = "cuda" if part.endswith("-cuda") else "cpu"  # 'train+sample-cuda
    part = part.removesuffix("-cuda")
    threads = _threads()
    rows = []
    for p in part.split("+"):  # several parts in one child: fewer interpreter starts, one RSS for them all
        if p in ("train", "sample"):
            rows += part_train_sample(dims, size, device, quick, p == "sample")
        else:
            rows += {"audit": part_audit, "evaluate": part_evaluate, "export": part_export}[p](dims, size, quick)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    for r in rows:
        r.update(kind=kind, size=size, device=device, threads=threads, peak_rss_gib=round(rss, 3))
    print("RESULT " + json.dumps(rows), flush=True)


# ------------------------------------------------------------------------------------------------- parent
def run_child(spec: str, quick: bool, timeout: float) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("SYNTHGEN_BENCH_THREADS", "1"), "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", spec] + (["--quick"] if quick else [])
    kind, size, part = spec.split(":")
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return [{"kind": kind, "size": int(size), "part": part, "variant": "-", "value": None, "unit": "",
                 "note": f"timed out after {timeout:.0f} s"}]
    wall = time.perf_counter() - t0
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            rows = json.loads(line[7:])
            for row in rows:
                row["child_wall_s"] = round(wall, 1)
            return rows
    err = (r.stderr.strip().splitlines() or ["no output"])[-1][:160]
    return [{"kind": kind, "size": int(size), "part": part, "variant": "-", "value": None, "unit": "",
             "note": f"failed: {err}"}]


def markdown(rows: list[dict]) -> str:
    out = ["| shape | part | variant | value | unit | peak RSS GiB | device | note |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shape = f"{r['size']} px" if r["kind"] == "2d" else f"{r['size']}^3"
        val = "n/a" if r.get("value") is None else f"{r['value']:g}"
        out.append(f"| {shape} | {r['part']} | {r['variant']} | {val} | {r.get('unit', '')} | "
                   f"{r.get('peak_rss_gib', '')} | {r.get('device', '')} | {r.get('note', '')} |")
    return "\n".join(out)


def write_docs(table: str, command: str, machine: str) -> None:
    doc = REPO / "docs" / "performance.md"
    text = doc.read_text(encoding="utf-8")
    head = "## Costs at size"
    section = (f"{head}\n\nGenerated by `benchmarks/size_costs.py` (issue 17 item 5); each row is one child "
               f"process (peak RSS is its own), one torch thread, CPU seconds on a CPU. Ours and MONAI are measured "
               f"in the same run; compare ratios, not absolute figures (the machine is shared). Our models are "
               f"built as `dvc repro` builds them (conf/ composed, size presets applied; untrained weights); "
               f"latent train rows encode inside the timed step for ours and MONAI alike (the train stage encodes "
               f"the training set once up front).\n\n```bash\n{command}\n```\n\n{machine}\n\n{table}\n")
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + section + (text[nxt + 1:] if nxt != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    doc.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small batches and n, 2 repeats (< 10 min at 1 thread)")
    ap.add_argument("--cuda", action="store_true", help="add GPU rows for train/sample when a GPU is there")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES_2D)))
    ap.add_argument("--volumes", default=",".join(map(str, SIZES_3D)))
    ap.add_argument("--parts", default="train+sample,export,audit,evaluate",
                    help="comma-separated children; 'a+b' runs parts a and b in one child (shared peak RSS)")
    ap.add_argument("--heavy-sizes", default=None,
                    help="2D sizes for the audit and evaluate parts (default: 28,64 with --quick, else --sizes); "
                         "the audit at 128 px alone is minutes of CPU today")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per child (default 600 quick, 1800)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "size_costs.json"))
    ap.add_argument("--docs", action="store_true", help="write the table into docs/performance.md")
    ap.add_argument("--append", action="store_true", help="add to the rows already in --out (same shape, part, "
                    "variant and device replaced): build the table in several sittings")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.quick)
        return
    timeout = a.timeout or (600 if a.quick else 1800)
    parts = [p for p in a.parts.split(",") if p]
    sizes = [s for s in a.sizes.split(",") if s]
    heavy = [s for s in (a.heavy_sizes or ("28,64" if a.quick else a.sizes)).split(",") if s in sizes]
    specs = [f"2d:{s}:{p}" for s in sizes for p in parts if s in heavy or p not in ("audit", "evaluate")]
    specs += [f"3d:{v}:{p}" for v in a.volumes.split(",") if v for p in parts]
    if a.cuda:
        import torch

        if torch.cuda.is_available():
            specs += [f"2d:{s}:train+sample-cuda" for s in a.sizes.split(",") if s]
            specs += [f"3d:{v}:train+sample-cuda" for v in a.volumes.split(",") if v]
        else:
            print("--cuda: torch sees no GPU; CPU rows only", flush=True)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for spec in specs:
        got = run_child(spec, a.quick, timeout)
        for r in got:
            print(f"{spec:18s} {r['variant'][:48]:48s} {r.get('value')} {r.get('unit', '')}  {r.get('note', '')[:90]}",
                  flush=True)
        rows += got
    import platform

    import torch

    machine = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
               f"{torch.__version__}, load average {os.getloadavg()[0]:.1f} at the end, total "
               f"{time.perf_counter() - t0:.0f} s wall.")
    if a.append and Path(a.out).exists():
        def key(r: dict) -> tuple:
            return r["kind"], r["size"], r["part"], r["variant"], r.get("device", "cpu")

        new = {key(r) for r in rows}
        old = [r for r in json.loads(Path(a.out).read_text(encoding="utf-8"))["rows"] if key(r) not in new]
        rows = sorted(old + rows, key=lambda r: (r["kind"], r["size"], r["part"]))
    Path(a.out).write_text(json.dumps({"machine": machine, "quick": a.quick, "rows": rows}, indent=1) + "\n",
                           encoding="utf-8")
    table = markdown(rows)
    print(table)
    if a.docs:
        cmd = "python benchmarks/size_costs.py" + (" --quick" if a.quick else "") + (" --cuda" if a.cuda else "") \
            + " --docs"
        write_docs(table, cmd, machine)


if __name__ == "__main__":
    main()
