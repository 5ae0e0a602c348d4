"""What the YAML defaults in ``conf/`` cannot say about a key: null defaults, ranges, choices, formats.

``RULES`` maps a dotted key (``*`` matches any part, first match wins after the exact keys) to a rule of
:mod:`synthgen.validation`; a rule replaces the type inferred from the key's YAML default. Every key whose
default is null needs an entry (``tests/test_validation.py`` checks this, and that every default passes its
rule). Keep the choices here in step with the code that reads them (the tests compare them too).
"""

from __future__ import annotations

from typing import Any, Mapping

from .validation import AnyOf, Bool, Int, ListOf, MapOf, Num, Open, Rule, Str

TARGET = Str(pattern=r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", what="a dotted import path (package.module.Class)")
SEED = Int(ge=0, lt=2**32, note=" (a seed)")
POS = Int(ge=1)
NONNEG = Int(ge=0)
THREADS = Int(ge=1, null="torch's default")
FRACTION = Num(ge=0, lt=1)          # shares of a whole that must leave something: [0, 1)
PROB = Num(ge=0, le=1)
ALPHA = Num(gt=0, lt=1)
PATH = Str(nonempty=True, what="a path")
LR = Num(gt=0, note=" (a learning rate)")
BETAS = ListOf(Num(ge=0, lt=1), length=2)
COSINE = Num(ge=-1, le=1, null="no floor")
LIGHTNING = "Lightning's default"
#: ``synthgen.precision.BF16_SETTINGS``: bf16 autocast on, off, or where the device runs bf16 natively.
BF16 = AnyOf(Bool(), Str(choices=("auto",)), what="true, false or 'auto' (bf16 where the device has it natively)")
#: Lightning's ``precision`` values (lightning.fabric.connector._PRECISION_INPUT).
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine",
              "transformer-engine-float16", "64", "32", "16", "bf16")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
DEVICES = AnyOf(Int(ge=1), Int(choices=(-1,), note=" (all)"), Str(pattern=r"auto|-1|\d+(,\s*\d+)*,?", what="'auto'"),
                ListOf(Int(ge=0), min_len=1), what="an integer >= 1, -1 (all), 'auto' or a list of device indices")
#: ``synthgen.sampling.SAMPLERS``, ``synthgen.sampling.schedule.PREDICTION_TYPES``,
#: ``synthgen.metrics.utility.ARMS``, ``synthgen.stages.export.FORMATS``, ``synthgen.models.diffaugment.POLICIES``,
#: ``synthgen.data.symmetries.SYMMETRIES``.
SAMPLERS = ("ddpm", "ddim", "dpmpp")
PREDICTION_TYPES = ("epsilon", "v_prediction")
ARMS = ("trtr", "trtr_balanced", "tstr", "trs", "trs_balanced", "full_reference")
FORMATS = ("webdataset", "dicom", "nifti")
DIFFAUGMENT = ("color", "translation", "cutout")
SYMMETRY_NAMES = ("hflip", "vflip", "rot90")
_FMT = "|".join(FORMATS)
_AUG = "|".join(DIFFAUGMENT)
_SIZED = "from evaluate.classifier.presets for the image size"

RULES: dict[str, Rule] = {
    "seed": SEED,
    "paths.*": PATH,
    "budget.name": Str(nonempty=True),
    "budget.sized_for": ListOf(Str(nonempty=True), min_len=1, unique=True, null="any data source"),
    # ---------------------------------------------------------------------------------------- data
    "data._target_": TARGET,
    "data.name": Str(nonempty=True),
    "data.image_size": Int(ge=1, null="the source's size", note=" (pixels)"),
    "data.classes": ListOf(Str(nonempty=True), min_len=1, unique=True, null="from the source"),
    "data.split.val": FRACTION,
    "data.split.test": FRACTION,
    "data.split.holdout": FRACTION,
    "data.split.holdout_from_val": Num(gt=0, lt=1, note=" (share of the official val split)"),
    "data.split.near_copy_pearson": Num(gt=0, le=1, null="no near-duplicate check"),
    "data.symmetries": ListOf(Str(choices=SYMMETRY_NAMES), unique=True),
    "data.split.seed": SEED,
    "data.rare.classes": ListOf(Str(nonempty=True), unique=True),
    "data.rare.keep": Int(ge=0, null="no cut", note=" (training images kept per rare class)"),
    "data.rare.seed": SEED,
    "data.path": PATH,
    "data.root": PATH,
    "data.labels": PATH,
    "data.flavour": Str(nonempty=True, null="from the file name"),
    "data.window": ListOf(Num(), length=2, null="automatic"),
    "data.workers": Int(ge=1, null="automatic", note=" (decoding threads)"),
    "data.multiframe": Str(choices=("split", "reject")),
    "data.slice_axis": Int(choices=(0, 1, 2, -1)),
    "data.prevalence": MapOf(PROB, what="class name"),
    "data.patients": POS,
    "data.images_per_patient": POS,
    "data.source_size": Int(ge=8, null="max(64, data.image_size)", note=" (pixels)"),
    "data.seed": SEED,
    "data.dims": Int(choices=(2, 3), note=" (2 = images, 3 = volumes)"),
    "data.volume.shape": ListOf(Int(ge=2), length=3, null="image_size on every axis"),
    "data.volume.spacing": ListOf(Num(gt=0), length=3, null="resize the field of view to shape"),
    "data.source_shape": ListOf(Int(ge=8), length=3),
    "data.source_spacing": ListOf(Num(gt=0), length=3),
    # --------------------------------------------------------------------------------------- model
    "model._target_": TARGET,
    "model.name": Str(nonempty=True),
    "model.batch_size": Int(ge=1, null="from model.presets for the image size"),
    "model.presets": Open(Open(None, "model keys sized for that side"), "image side in px (quoted) -> model keys"),
    "model.seed": SEED,
    "model.ema_decay": PROB,
    "model.autocast": BF16,
    "model.presets3d": Open(Open(None, "model keys sized for that volume edge"),
                            "largest volume edge in voxels (quoted) -> model keys"),
    "model.presets3d.*.batch_size": POS,
    "model.presets3d.*.channels": ListOf(POS, min_len=1),
    "model.presets3d.*.blocks_per_level": POS,
    "model.presets3d.*.max_batch": POS,
    "model.presets.*.batch_size": POS,
    "model.presets.*.channels": ListOf(POS, min_len=1),
    "model.presets.*.blocks_per_level": POS,
    "model.presets.*.g_width": POS,
    "model.presets.*.d_width": POS,
    "model.channels": ListOf(POS, min_len=1, null="from model.presets for the image size"),
    "model.blocks_per_level": Int(ge=1, null="from model.presets for the image size"),
    "model.emb_dim": Int(ge=1, null="4 x channels[0]"),
    "model.dropout": FRACTION,
    "model.prediction_type": Str(choices=PREDICTION_TYPES),
    "model.num_timesteps": Int(ge=2),
    "model.label_dropout": FRACTION,
    "model.lr": LR,
    "model.weight_decay": Num(ge=0),
    "model.warmup_steps": NONNEG,
    "model.adam_betas": BETAS,
    "model.max_batch": Int(ge=1, null="from model.presets for the image size"),
    "model.presets.*.max_batch": POS,
    "model.z_dim": POS,
    "model.g_width": Int(ge=1, null="from model.presets for the image size"),
    "model.d_width": Int(ge=1, null="from model.presets for the image size"),
    "model.width_cap": POS,
    "model.embed_dim": POS,
    "model.lr_g": LR,
    "model.lr_d": LR,
    "model.betas": BETAS,
    "model.diffaugment": Str(pattern=rf"(\s*({_AUG})\s*(,\s*({_AUG})\s*)*)?",
                             what="comma-separated names from " + ", ".join(DIFFAUGMENT) + " (or '')"),
    "model.standing_stats_batches": NONNEG,
    "model.diversity_weight": Num(ge=0),
    "model.mbstd_group": NONNEG,
    "model.hierarchical_z": Bool(),
    "model.latent": Bool(null="on for 2D images from 128 px up with model=ddpm"),
    # --------------------------------------------------------------------------------- autoencoder
    "autoencoder._target_": TARGET,
    "autoencoder.batch_size": POS,
    "autoencoder.max_steps": POS,
    "autoencoder.max_time": Str(pattern=r"\d+:\d+:\d+:\d+", what="a duration 'DD:HH:MM:SS' (quoted in YAML)",
                                null="no time limit"),
    "autoencoder.channels": ListOf(POS, min_len=1),
    "autoencoder.latent_channels": POS,
    "autoencoder.num_res_blocks": POS,
    "autoencoder.norm_num_groups": POS,
    "autoencoder.kl_weight": Num(ge=0),
    "autoencoder.lr": LR,
    "autoencoder.adam_betas": BETAS,
    "autoencoder.autocast": BF16,
    "autoencoder.seed": SEED,
    # ------------------------------------------------------------------------------------- trainer
    "trainer._target_": TARGET,
    "trainer.accelerator": Str(choices=ACCELERATORS),
    "trainer.devices": DEVICES,
    "trainer.num_nodes": POS,
    "trainer.strategy": Str(nonempty=True),
    "trainer.precision": AnyOf(Str(choices=PRECISIONS), Int(choices=(64, 32, 16)),
                                what="a Lightning precision: " + ", ".join(PRECISIONS[:6]) + ", ..."),
    "trainer.max_time": Str(pattern=r"\d+:\d+:\d+:\d+", what="a duration 'DD:HH:MM:SS' (quoted in YAML)",
                            null="no time limit"),
    "trainer.max_epochs": Int(ge=-1, note=" (-1 = no limit)", null=LIGHTNING),
    "trainer.max_steps": Int(ge=-1, note=" (-1 = no limit)"),
    "trainer.log_every_n_steps": Int(ge=1, null=LIGHTNING),
    "trainer.check_val_every_n_epoch": Int(ge=1, null=LIGHTNING),
    "trainer.limit_val_batches": AnyOf(Int(ge=0, note=" (batches)"), Num(ge=0, le=1, note=" (a share)"),
                                       null=LIGHTNING),
    "trainer.num_sanity_val_steps": Int(ge=-1, null=LIGHTNING),
    "trainer.enable_model_summary": Bool(null=LIGHTNING),
    "trainer.enable_progress_bar": Bool(null=LIGHTNING),
    # --------------------------------------------------------------------------------------- train
    "train.checkpoint_every_s": Num(gt=0, null="no time rule", note=" (seconds)"),
    "train.checkpoint_every_n_batches": Int(ge=1, null="the time rule"),
    "train.num_threads": THREADS,
    "train.num_workers": NONNEG,
    "train.class_balance": PROB,
    "train.finetune.classes": ListOf(Str(nonempty=True), unique=True),
    "train.finetune.steps": NONNEG,
    "train.finetune.lr_factor": Num(gt=0, le=10),
    # ------------------------------------------------------------------------------------ generate
    "generate.checkpoint": Str(nonempty=True, null="<paths.models>/generator.ckpt", what="a .ckpt path"),
    "generate.per_class": Int(ge=0, lt=2**23, null="balance_to or counts decide"),
    "generate.batch_size_3d": POS,
    "generate.counts": MapOf(Int(ge=0, lt=2**23), what="class name"),
    "generate.balance_to": Int(ge=0, lt=2**23, null="per_class decides"),
    "generate.seed": Int(ge=0, lt=4096, note=" (12 bits of every sample seed; it follows the top-level seed)"),
    "generate.batch_size": POS,
    "generate.accelerator": Str(choices=ACCELERATORS),
    "generate.devices": DEVICES,
    "generate.sampling": Open(None, "keyword arguments of the model's generate()"),
    "generate.sampling.sampler": Str(choices=SAMPLERS),
    "generate.sampling.steps": POS,
    "generate.sampling.guidance": AnyOf(Num(ge=0), MapOf(Num(ge=0), what="class name"),
                                        what="a number >= 0 or a {class name: scale} map"),
    "generate.sampling.truncation": Num(gt=0, null="none"),
    "generate.grid_columns": POS,
    "generate.grid_rows": POS,
    # -------------------------------------------------------------------------------------- curate
    "curate.input": PATH,
    "curate.output": PATH,
    "curate.classes": ListOf(Str(nonempty=True), unique=True),
    "curate.oversample": Num(gt=0),
    "curate.guidance": ListOf(Num(ge=0), min_len=1, unique=True),
    "curate.threads": THREADS,
    "curate.filter.min_confidence": PROB,
    "curate.filter.realism_k": POS,
    "curate.filter.max_realism": Num(gt=0, null="no realism filter"),
    "curate.filter.near_duplicate": Num(gt=-1, le=1, null="no near-duplicate filter"),
    "curate.plan.enabled": Bool(),
    "curate.plan.amounts": ListOf(Num(gt=0), min_len=1, unique=True),
    "curate.plan.shares": ListOf(Num(gt=0, le=1), min_len=1, unique=True),
    "curate.plan.guidance": Num(null="the lowest guidance among the candidates"),
    "curate.plan.seeds": ListOf(SEED, min_len=2, unique=True),
    "curate.plan.steps": Int(ge=1, null="evaluate.classifier.steps"),
    "curate.plan.batch_size": Int(ge=1, null="evaluate.classifier.batch_size"),
    "curate.plan.pretrain_steps": NONNEG,
    "curate.plan.metric": Str(choices=("recall", "soft_recall")),
    "curate.plan.confidence": ALPHA,
    "curate.plan.validation": Str(nonempty=True, what="a path to an .npz", null="the prepared val split"),
    "curate.plan.max_balanced_accuracy_loss": FRACTION,
    # ------------------------------------------------------------------------------------ evaluate
    "evaluate.cohort": PATH,
    "evaluate.prepared": PATH,
    "evaluate.output": PATH,
    "evaluate.reports": PATH,
    "evaluate.cache_dir": Str(nonempty=True, null="no cache"),
    "evaluate.threads": THREADS,
    "evaluate.rare_classes": ListOf(Str(nonempty=True), unique=True),
    "evaluate.raw_cohort": Str(nonempty=True, null="no raw-synthetic arm", what="a path"),
    "evaluate.classifier.width": Int(ge=1, null=_SIZED),
    "evaluate.classifier.stages": Int(ge=1, null=_SIZED),
    "evaluate.classifier.steps": POS,
    "evaluate.classifier.bf16": BF16,
    "evaluate.classifier.batch_size": Int(ge=1, null=_SIZED),
    "evaluate.classifier.presets": Open(Open(None, "classifier keys sized for that side"),
                                        "image side in px (quoted) -> classifier keys"),
    "evaluate.classifier.presets.*.width": POS,
    "evaluate.classifier.presets.*.stages": POS,
    "evaluate.classifier.presets.*.batch_size": POS,
    "evaluate.classifier.presets.*.shift": NONNEG,
    "evaluate.classifier.lr": LR,
    "evaluate.classifier.warmup": FRACTION,
    "evaluate.classifier.weight_decay": Num(ge=0),
    "evaluate.classifier.label_smoothing": FRACTION,
    "evaluate.classifier.shift": Int(ge=0, null=_SIZED),
    "evaluate.classifier.volumes": Open(None, "keys of evaluate.classifier that replace the 2D ones for volumes"),
    "evaluate.classifier.volumes.width": POS,
    "evaluate.classifier.volumes.batch_size": POS,
    "evaluate.classifier.volumes.stages": POS,
    "evaluate.classifier.volumes.shift": NONNEG,
    "evaluate.features.steps": POS,
    "evaluate.utility.arms": ListOf(Str(choices=ARMS), min_len=1, unique=True),
    "evaluate.utility.seeds": ListOf(SEED, min_len=1, unique=True),
    "evaluate.utility.synthetic_share": PROB,
    "evaluate.fidelity.max_samples": Int(ge=2),
    "evaluate.fidelity.k": POS,
    "evaluate.fidelity.kid_subsets": POS,
    "evaluate.fidelity.kid_subset_size": Int(ge=2),
    "evaluate.diversity.pairs_per_class": POS,
    "evaluate.diversity.kernel_size": POS,
    "evaluate.diversity.sigma": Num(gt=0),
    "evaluate.*.seed": SEED,
    # ------------------------------------------------------------------------------------- privacy
    "privacy.seed": SEED,
    "privacy.threads": THREADS,
    "privacy.quantize_dtype": Str(choices=("uint8", "uint16"), null="the training data's dtype"),
    "privacy.working_size": Int(ge=8, null="full resolution", note=" (pixels, longest side)"),
    "privacy.volume.working_size": Int(ge=4, null="full resolution", note=" (voxels per axis)"),
    "privacy.volume.max_shift": NONNEG,
    "privacy.volume.flips": ListOf(Int(choices=(0, 1, 2)), unique=True),
    "privacy.volume.lowres_factor": POS,
    "privacy.volume.lowres_margin": NONNEG,
    "privacy.knn.backend": Str(choices=("auto", "torch", "faiss")),
    "privacy.knn.device": Str(pattern=r"cpu|cuda(:\d+)?|mps", what="'cpu', 'cuda', 'cuda:N' or 'mps'"),
    "privacy.knn.chunk_mb": Num(gt=0),
    "privacy.pixel.lowres_factor": POS,
    "privacy.pixel.lowres_margin": NONNEG,
    "privacy.pixel.candidates": POS,
    "privacy.pixel.max_shift": NONNEG,
    "privacy.pixel.rotations": ListOf(Num(gt=-180, lt=180, note=" (degrees)")),
    "privacy.pixel.scales": ListOf(Num(gt=0)),
    "privacy.pixel.ssim_top": POS,
    "privacy.pixel.batch": POS,
    "privacy.pixel.prefilter_quantile": PROB,
    "privacy.pixel.refine.top": NONNEG,
    "privacy.pixel.refine.quantile": PROB,
    "privacy.pixel.refine.steps": POS,
    "privacy.pixel.refine.lr": LR,
    "privacy.pixel.refine.start_angles": ListOf(Num(gt=-180, lt=180, note=" (degrees)")),
    "privacy.pixel.refine.max_angle_deg": Num(gt=0, lt=90),
    "privacy.pixel.refine.max_log_scale": Num(gt=0, lt=1),
    "privacy.pixel.refine.max_shift_px": Num(gt=0),
    "privacy.pixel.refine.margin": NONNEG,
    "privacy.pixel.refine.batch": POS,
    "privacy.embedding.dim": POS,
    "privacy.embedding.width": POS,
    "privacy.embedding.steps": POS,
    "privacy.embedding.batch_size": Int(ge=2),
    "privacy.embedding.lr": LR,
    "privacy.embedding.temperature": Num(gt=0),
    "privacy.embedding.pad_modes": ListOf(Str(choices=("border", "zeros", "reflection")), min_len=1),
    "privacy.embedding.cache_dir": Str(nonempty=True, null="no cache"),
    "privacy.ratio.k": Int(ge=2),
    "privacy.policy.neighbour_slice": Str(choices=("copy", "allowed")),
    "privacy.policy.neighbour_quantile": PROB,
    "privacy.calibration.quantile": Num(gt=0, le=1),
    "privacy.calibration.min_class_count": POS,
    "privacy.calibration.tail": Str(choices=("empirical", "exponential")),
    "privacy.calibration.tail_fraction": Num(gt=0, le=0.5),
    "privacy.calibration.floors.pearson": COSINE,
    "privacy.calibration.floors.ssim": COSINE,
    "privacy.calibration.floors.embedding": COSINE,
    "privacy.calibration.ratio_ceiling": Num(gt=0, le=1),
    "privacy.gates.max_exact_copies": NONNEG,
    "privacy.gates.max_flagged_share": PROB,
    "privacy.gates.flagged_margin": PROB,
    "privacy.gates.flagged_alpha": ALPHA,
    "privacy.gates.flagged_ref_min_class": POS,
    "privacy.gates.reference_max_samples": POS,
    "privacy.gates.dcr_margin": Num(ge=0, le=1),
    "privacy.gates.dcr_alpha": ALPHA,
    "privacy.gates.mia_max_auc": PROB,
    "privacy.gates.mia_max_tpr_at_1pct_fpr": PROB,
    "privacy.gates.mia_alpha": ALPHA,
    "privacy.gates.mia_max_samples": Int(ge=2),
    "privacy.report.top_pairs": NONNEG,
    "privacy.mia_loss.timesteps": ListOf(NONNEG, min_len=1),
    "privacy.mia_loss.max_samples": Int(ge=2),
    "privacy.mia_loss.batch": POS,
    # -------------------------------------------------------------------------------------- export
    "export.name": Str(pattern=r"[A-Za-z0-9_-]+", what="a name of [A-Za-z0-9_-]+"),
    "export.format": AnyOf(Str(pattern=rf"({_FMT})(\+({_FMT}))*"), ListOf(Str(choices=FORMATS), min_len=1),
                           what="webdataset, dicom or nifti, or several as 'a+b' or a list"),
    "export.shard_size.samples": POS,
    "export.shard_size.bytes": Num(gt=0, null="no limit", note=" (bytes)"),
    "export.seed": SEED,
    "export.png_level": Int(ge=0, le=9, note=" (deflate level; ISA-L uses 0-3)"),
    "export.license": Str(nonempty=True),
}

#: Config groups that also take keys their YAML does not list, when the group's ``_target_`` accepts them
#: as keyword arguments (e.g. ``+trainer.gradient_clip_val=1.0`` for Lightning's Trainer).
EXTENSIBLE = ("trainer",)


def cross_checks(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems that involve several keys (run once every key has the right type and range)."""
    errors = []
    split = (cfg.get("data") or {}).get("split") or {}
    shares = [split.get(k) for k in ("val", "test", "holdout")]
    if all(isinstance(s, (int, float)) for s in shares) and sum(shares) >= 1:
        errors.append(("data.split", f"val + test + holdout = {sum(shares):g} must be < 1 (train takes the rest)"))
    gen = cfg.get("generate") or {}
    if gen.get("per_class") is not None and gen.get("balance_to") is not None and not gen.get("counts"):
        errors.append(("generate.per_class", "set either per_class or balance_to, not both (the other null)"))
    model = cfg.get("model") or {}
    if model.get("latent") is True and model.get("_target_") != "synthgen.models.diffusion.DiffusionModule":
        errors.append(("model.latent", f"latent diffusion needs model=ddpm, not {model.get('_target_')}; "
                                       "set model.latent=false or pick model=ddpm"))
    ae = cfg.get("autoencoder") or {}
    groups, widths = ae.get("norm_num_groups"), ae.get("channels")
    if isinstance(groups, int) and groups > 0 and isinstance(widths, list) and \
            any(isinstance(w, int) and w % groups for w in widths):
        errors.append(("autoencoder.norm_num_groups", f"{groups} does not divide every width of "
                                                      f"autoencoder.channels {widths}"))
    return errors
