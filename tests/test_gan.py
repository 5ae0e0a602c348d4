"""The class-conditional GAN: networks, DiffAugment, one Lightning training run, generation contract."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from synthgen.models.base import GeneratorModule
from synthgen.models.diffaugment import diff_augment, parse_policy
from synthgen.models.gan import ConditionalGAN, mode_seeking_ratio
from synthgen.models.gan_nets import ProjectionDiscriminator, upsampling_plan

torch.set_num_threads(1)


def tiny(shape=(3, 16, 16), n_classes=3, **kw) -> ConditionalGAN:
    torch.manual_seed(0)
    # Tiny nets in float32 with a plain latent and no mode-seeking loss unless a test asks for them.
    args = dict(z_dim=8, g_width=8, d_width=8, embed_dim=4, standing_stats_batches=2, diversity_weight=0.0,
                autocast=False, hierarchical_z=False)
    args.update(kw)
    return ConditionalGAN([f"c{i}" for i in range(n_classes)], shape, **args)


@pytest.mark.parametrize("side,expected", [(28, (7, 2)), (32, (4, 3)), (64, (4, 4)), (16, (4, 2)), (48, (6, 3))])
def test_upsampling_plan(side, expected):
    assert upsampling_plan(side) == expected


def test_upsampling_plan_rejects_tiny_or_odd_sides():
    with pytest.raises(ValueError, match="too small or odd"):
        upsampling_plan(7)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16), (1, 32, 32)])
def test_generate_shapes_and_range(shape):
    m = tiny(shape)
    assert isinstance(m, GeneratorModule)
    x = m.generate(torch.tensor([0, 1, 2, 0]), torch.tensor([5, 6, 7, 8]))
    assert x.shape == (4, *shape) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert m.discriminator(x * 2 - 1, torch.tensor([0, 1, 2, 0])).shape == (4,)


def test_rectangular_images_are_refused():
    with pytest.raises(ValueError, match="square"):
        ConditionalGAN(["a"], (1, 16, 32))


def test_discriminator_is_spectrally_normalised():
    d = ProjectionDiscriminator(3, 1, 16, width=8)
    names = [n for n, _ in d.named_parameters()]
    assert any("parametrizations.weight" in n for n in names)
    assert all("parametrizations" in n or n.endswith("bias") for n in names if "weight" in n)


def test_sample_depends_only_on_label_seed_and_weights():
    m = tiny()
    labels, seeds = torch.tensor([0, 1, 2, 1]), torch.tensor([11, 12, 13, 14])
    batch = m.generate(labels, seeds)
    assert torch.equal(batch, m.generate(labels, seeds))
    alone = torch.cat([m.generate(labels[i:i + 1], seeds[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(alone, batch, atol=1e-6, rtol=0)
    assert not torch.allclose(m.generate(labels, seeds + 1), batch)


def test_conditioning_changes_outputs_per_class():
    m = tiny()
    seeds = torch.full((3,), 42)
    x = m.generate(torch.tensor([0, 1, 2]), seeds)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert (x[a] - x[b]).abs().mean() > 1e-3


def test_truncation_and_unknown_sampling_keys():
    m = tiny()
    labels, seeds = torch.tensor([0, 1]), torch.tensor([1, 2])
    assert torch.equal(m.generate(labels, seeds, sampler="dpmpp", steps=20), m.generate(labels, seeds))
    assert not torch.equal(m.generate(labels, seeds, truncation=0.1), m.generate(labels, seeds))


def test_diffaugment_keeps_shape_and_gradients():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x * 2 - 1, "color,translation,cutout")
    y.sum().backward()
    assert y.shape == x.shape and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ""), x)
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        parse_policy("color,flip")


def test_training_steps_update_both_nets_and_ema():
    L.seed_everything(0, verbose=False)
    m = tiny()
    g0 = [p.detach().clone() for p in m.generator.parameters()]
    d0 = [p.detach().clone() for p in m.discriminator.parameters()]
    ds = TensorDataset(torch.rand(16, 3, 16, 16), torch.randint(0, 3, (16,)))
    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(m, DataLoader(ds, batch_size=8))
    assert trainer.global_step == 6  # manual optimization: 2 optimizer steps (D, G) per batch
    assert int(m.ema_updates) == 3
    assert any(not torch.equal(a, b) for a, b in zip(g0, m.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, m.discriminator.parameters()))
    ema = list(m.generator_ema.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(ema, m.generator.parameters()))
    assert all(not p.requires_grad for p in ema)
    m.prepare_for_sampling(seed=0)
    x1 = m.generate(torch.tensor([0, 1]), torch.tensor([3, 4]))
    m.prepare_for_sampling(seed=0)
    assert torch.equal(x1, m.generate(torch.tensor([0, 1]), torch.tensor([3, 4])))


def test_mode_seeking_ratio():
    x = torch.rand(4, 3, 8, 8)
    z1, z2 = torch.zeros(4, 5), torch.ones(4, 5)
    assert float(mode_seeking_ratio(x, x, z1, z2)) == 0.0  # collapsed: two latents, one image
    torch.testing.assert_close(mode_seeking_ratio(x, x + 0.5, z1, z2), torch.tensor(0.5))


def _fit(m: ConditionalGAN, batches: int = 3) -> L.Trainer:
    L.seed_everything(0, verbose=False)
    ds = TensorDataset(torch.rand(8 * batches, 3, 16, 16), torch.randint(0, 3, (8 * batches,)))
    trainer = L.Trainer(max_steps=2 * batches, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(m, DataLoader(ds, batch_size=8))
    return trainer


def test_mode_seeking_pairs_share_labels_and_change_the_generator_update():
    seen = []
    plain, ms = tiny(), tiny(diversity_weight=1.0)
    hook = ms.discriminator.register_forward_hook(lambda mod, args, out: seen.append(args[1].clone()))
    trainer = _fit(ms, batches=1)
    hook.remove()
    assert "ms_ratio" in trainer.callback_metrics and float(trainer.callback_metrics["ms_ratio"]) > 0
    fake_labels = seen[1]  # D calls: real, fake (D step), fake (G step)
    assert torch.equal(fake_labels[:4], fake_labels[4:]) and torch.equal(seen[2], fake_labels)
    _fit(plain, batches=1)
    assert any(not torch.equal(a, b) for a, b in zip(plain.generator.parameters(), ms.generator.parameters()))


def test_bf16_autocast_training_keeps_float32_weights_and_sampling():
    m = tiny(autocast=True)
    _fit(m, batches=2)
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert all(torch.isfinite(p).all() for p in m.generator_ema.parameters())
    x = m.generate(torch.tensor([0, 1]), torch.tensor([3, 4]))
    assert x.dtype == torch.float32 and torch.isfinite(x).all()


def test_minibatch_stddev_sees_collapse_within_a_group():
    from synthgen.models.gan_nets import minibatch_stddev

    x = torch.rand(8, 4, 5, 5)
    out = minibatch_stddev(x, group_size=4)
    assert out.shape == (8, 5, 5, 5) and torch.equal(out[:, :4], x)
    collapsed = x[:1].expand(8, -1, -1, -1)  # one image repeated: zero spread (up to the eps)
    assert float(minibatch_stddev(collapsed, 4)[:, 4].max()) < 1e-3 < float(out[:, 4].min())
    # group g = images i, i + N/g, ...: image 0's feature only depends on its own group
    y = x.clone()
    y[1] += 10
    assert torch.equal(minibatch_stddev(y, 4)[0, 4], out[0, 4]) and not torch.equal(minibatch_stddev(y, 4)[1, 4], out[1, 4])
    assert minibatch_stddev(torch.rand(6, 2, 3, 3), 4).shape == (6, 3, 3, 3)  # 6 % 4: one group of 6


def test_minibatch_stddev_discriminator_trains():
    m = tiny(mbstd_group=4)
    assert m.discriminator.conv_last.in_channels == 8 * 2 + 1
    d0 = [p.detach().clone() for p in m.discriminator.parameters()]
    _fit(m, batches=2)
    assert any(not torch.equal(a, b) for a, b in zip(d0, m.discriminator.parameters()))
    assert m.discriminator(torch.rand(4, 3, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 0])).shape == (4,)


def test_hierarchical_latent_reaches_every_block():
    m = tiny(hierarchical_z=True)  # 16 px: 2 blocks -> z_dim 8 split 4 + 2 + 2
    g = m.generator
    assert g.z_chunks == [4, 2, 2] and g.fc.in_features == 4 + 4
    y, z = torch.tensor([0, 1]), torch.randn(2, 8)
    g.eval()
    base = g(z, y)
    for i in (1, 2):  # changing only block i's chunk changes the image
        z2 = z.clone()
        z2[:, 4 + 2 * (i - 1):4 + 2 * i] += 1.0
        assert not torch.allclose(g(z2, y), base)
    _fit(m, batches=2)
    x = m.generate(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]))
    assert x.shape == (3, 3, 16, 16) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="hierarchical_z needs"):
        ConditionalGAN(["a", "b"], (1, 16, 16), z_dim=2, hierarchical_z=True)
