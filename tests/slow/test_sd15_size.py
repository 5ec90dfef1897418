"""Stable Diffusion v1.5's architecture at 512 px (random weights, no download): one DPOK update on CPU."""

import pytest

pytestmark = pytest.mark.slow


def test_one_dpok_update_at_512px_with_gradient_checkpointing(tmp_path):
    from bench.perf_sd import SD15_UNET, dpok_round, write_sd15

    model = write_sd15(tmp_path)
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(859.5e6, rel=0.001)  # SD v1.5's UNet
    assert unet.config.block_out_channels == list(SD15_UNET["block_out_channels"])
    del unet
    result = dpok_round(str(model), batch=1, steps=2, checkpointing=True, precision="no", rounds=1)
    phases = result["phases_s"]
    assert phases["update"] > 0 and phases["rollout.policy"] > 0 and phases["rollout.reference"] > 0
    assert result["peak_rss_mb"] > 3000  # the fp32 UNet alone is 3.4 GB
