"""Shapes, parameter counts and layer structure of the encoder, decoder, classifier head and discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ser_mtl.models.components import ClassifierHead, Decoder, Discriminator, Encoder


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_encoder_paper_shape_and_count():
    torch.manual_seed(0)
    enc = Encoder()  # channels (16, 32, 32), pools (2,2), (2,2), (2,4)
    z = enc(torch.randn(2, 1, 128, 256))
    assert z.shape == (2, 32, 16, 16)  # the paper's 16 x 16 x 32 latent
    assert enc.output_shape((128, 256)) == (32, 16, 16)
    # conv weights (no bias before BN) + BN weight and bias: 1*16*9+32 + 16*32*9+64 + 32*32*9+64
    assert n_params(enc) == 176 + 4672 + 9280 == 14128


def test_encoder_code_is_standardised_and_signed():
    torch.manual_seed(0)
    enc = Encoder(channels=[4, 8, 8], pools=[(2, 2), (2, 2), (2, 4)])
    kinds = [[type(m).__name__ for m in block] for block in enc.blocks]
    assert kinds[:2] == [["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]] * 2
    assert kinds[2] == ["Conv2d", "MaxPool2d", "BatchNorm2d"]  # no ReLU, BN after the pool
    z = enc(torch.randn(8, 1, 32, 64))  # (8, 8, 4, 4), training mode: batch statistics
    assert z.shape == (8, 8, 4, 4)
    # each channel of the code has batch mean 0 and (biased) variance 1, like the prior N(0, I)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(z.var(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)
    assert 0.3 < (z < 0).float().mean() < 0.7
    # whereas a ReLU'd block's output is non-negative
    assert enc.blocks[0](torch.randn(8, 1, 32, 64)).min() >= 0


def test_two_layer_cnn_encoder_reaches_the_same_latent():
    enc = Encoder(channels=[16, 32], pools=[(4, 4), (2, 4)])
    assert enc(torch.randn(1, 1, 128, 256)).shape == (1, 32, 16, 16)


def test_encoder_rejects_bad_configuration_and_sizes():
    with pytest.raises(ValueError, match="equal length"):
        Encoder(channels=[16, 32, 32], pools=[(2, 2), (2, 2)])
    with pytest.raises(ValueError, match="pool"):
        Encoder(channels=[16], pools=[(0, 2)])
    with pytest.raises(ValueError, match=r"\(100, 256\) must be divisible by the pooling products \(8, 16\)"):
        Encoder().output_shape((100, 256))


@pytest.mark.parametrize(("channels", "pools", "latent", "out_hw"), [
    ([16, 32, 32], [(2, 2), (2, 2), (2, 4)], (32, 16, 16), (128, 256)),
    ([4, 8, 8], [(2, 2), (2, 2), (2, 4)], (8, 4, 4), (32, 64)),
    ([16, 32], [(4, 4), (2, 4)], (32, 16, 16), (128, 256)),
])
def test_decoder_mirrors_encoder(channels, pools, latent, out_hw):
    torch.manual_seed(0)
    dec = Decoder(channels, pools)
    convs = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.stride for c in convs] == [tuple(p) for p in reversed(pools)]
    assert [c.out_channels for c in convs] == list(reversed([1, *channels[:-1]]))
    x_hat = dec(torch.randn(3, *latent))
    assert x_hat.shape == (3, 1, *out_hw)
    # linear output: a normalised spectrogram has both signs, the reconstruction must too
    assert isinstance(dec.blocks[-1][-1], nn.ConvTranspose2d)
    assert x_hat.min() < 0 < x_hat.max()


def test_classifier_head_logits_hidden_and_count():
    torch.manual_seed(0)
    head = ClassifierHead(32, (16, 16), n_classes=4, conv_channels=32, hidden=128, dropout=0.3)
    # conv 32*32*9 (no bias) + BN 64 + dense (32*8*8)*128+128 + out 128*4+4
    assert n_params(head) == 9216 + 64 + 262272 + 516 == 272068
    z = torch.randn(5, 32, 16, 16)
    head.eval()
    logits, hidden = head(z, return_hidden=True)
    assert logits.shape == (5, 4) and hidden.shape == (5, 128)
    assert hidden.min() >= 0  # after the ReLU
    assert torch.allclose(head(z), logits)
    # logits are the output layer applied to the hidden layer (dropout is the identity in eval)
    assert torch.allclose(logits, head.out(hidden), atol=1e-6)


def test_classifier_head_dropout_only_in_training():
    torch.manual_seed(0)
    head = ClassifierHead(8, (4, 4), n_classes=3, conv_channels=8, hidden=64, dropout=0.3)
    z = torch.randn(4, 8, 4, 4)
    head.eval()
    assert torch.equal(head(z), head(z))
    head.train()
    torch.manual_seed(1)
    a = head(z)
    torch.manual_seed(2)
    b = head(z)
    assert not torch.allclose(a, b)


def test_discriminator_shape_count_and_per_sample_scores():
    torch.manual_seed(0)
    disc = Discriminator(32, (16, 16), conv_channels=32, hidden=128)
    # conv 32*32*9+32 + dense 2048*128+128 + out 128+1
    assert n_params(disc) == 9248 + 262272 + 129 == 271649
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in disc.modules())
    d = torch.randn(6, 32, 16, 16)
    out = disc(d)
    assert out.shape == (6, 1)
    # no batch statistics: a sample's score does not depend on the rest of the batch
    assert torch.allclose(disc(d[:1]), out[:1], atol=1e-6)


def test_heads_reject_too_small_codes():
    with pytest.raises(ValueError, match="too small"):
        ClassifierHead(8, (1, 4), n_classes=2)
    with pytest.raises(ValueError, match="too small"):
        Discriminator(8, (4, 1))


def test_stats_pooling_head_reads_mean_and_std_over_time():
    torch.manual_seed(0)
    head = ClassifierHead(32, (8, 8), n_classes=4, conv_channels=32, hidden=64, dropout=0.3, pool="stats")
    # conv 32*32*9 + BN 64 + dense (2 stats * 32 channels * 4 rows)*64+64 + out 64*4+4
    assert n_params(head) == 9216 + 64 + (256 * 64 + 64) + 260 == 25988
    head.eval()
    z = torch.randn(3, 32, 8, 8)
    feats = head.features(z)  # (B, 2 * C * H/2)
    conv = head.features[:4](z)  # (B, C, H/2, W) after the frequency-only max-pool
    assert conv.shape == (3, 32, 4, 8)
    expected = torch.cat([conv.mean(-1), conv.std(-1, unbiased=False)], dim=1).flatten(1)
    torch.testing.assert_close(feats, expected, atol=1e-4, rtol=1e-4)
    # the dense layer does not depend on the code's width: the same head reads 8 or 16 time steps
    assert head(torch.randn(3, 32, 8, 16)).shape == (3, 4)
    with pytest.raises(ValueError, match="pool"):
        ClassifierHead(8, (4, 4), n_classes=2, pool="avg")
