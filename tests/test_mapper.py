import pytest
import torch

from mats.config import MapperConfig
from mats.mapper import PrefixMapper


@pytest.mark.parametrize("kind", ["transformer", "mlp"])
def test_prefix_shapes(kind):
    cfg = MapperConfig(kind=kind, prefix_length=5, clip_length=3, width=16, num_layers=2, num_heads=2)
    m = PrefixMapper(in_dim=12, lm_hidden=24, cfg=cfg)
    out = m(torch.randn(4, 12))
    assert out.shape == (4, 5, 24)


def test_transformer_prefix_depends_on_input_and_paper_defaults_build():
    cfg = MapperConfig(prefix_length=4, clip_length=4, width=16, num_layers=1, num_heads=2)
    m = PrefixMapper(8, 10, cfg).eval()
    a, b = m(torch.randn(1, 8)), m(torch.randn(1, 8))
    assert not torch.allclose(a, b)
    full = PrefixMapper(512, 576, MapperConfig())  # paper: 8 layers, prefix 40, clip 40, width 1024
    assert full(torch.randn(1, 512)).shape == (1, 40, 576)


def test_bad_mapper_config():
    with pytest.raises(ValueError, match="unknown mapper kind"):
        PrefixMapper(8, 8, MapperConfig(kind="lstm"))
    with pytest.raises(ValueError, match="divisible"):
        PrefixMapper(8, 8, MapperConfig(width=10, num_heads=3))
