"""Load a Stable Diffusion pipeline, add LoRA adapters, switch to the reference policy, save and load LoRA.

The reference policy p_pre is the same UNet with its adapters disabled: no second copy of the UNet's weights.
For running the reference beside the policy in another thread, ``reference_model`` gives a second module tree
without adapters whose every weight tensor is the policy UNet's own.
LoRA goes through peft (``unet.add_adapter``) and is saved in diffusers' format, so a fresh pipeline's
``load_lora_weights(run/lora)`` reproduces the fine-tuned model.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import os
import warnings
from pathlib import Path

import torch

from bench.errors import BenchError


def resolve_model(name: str, allow_download: bool = False) -> str:
    """Turn --model into a local pipeline folder (or a hub id when downloads are allowed), or fail clearly.

    Model names a world owns are resolved by the world first (``bench.resolve.resolve_model_path``)."""
    if not name:
        raise BenchError("no model given: pass --model (a pipeline folder or hub id), or use a world that has one")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise BenchError(
                f"model {name!r} is not a pipeline folder: expected model_index.json and the component folders "
                "written by StableDiffusionPipeline.save_pretrained"
            )
        return str(path)
    cached = _cached_snapshot(name)
    if cached:
        return cached
    if allow_download and os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        return name
    raise BenchError(
        f"model {name!r} is neither a pipeline folder (with model_index.json) nor in the local Hugging Face cache; "
        "no hub is reachable offline (pass a local folder, or --allow-download with network access)"
    )


def _cached_snapshot(repo_id: str) -> str | None:
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id: both mean "not available offline"
        return None
    return folder if (Path(folder) / "model_index.json").is_file() else None


def load_pipeline(path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A StableDiffusionPipeline with a DDIM scheduler, frozen weights, no safety checker and no progress bar."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype to dtype; older ones lack dtype
            warnings.simplefilter("ignore", FutureWarning)
            pipe = StableDiffusionPipeline.from_pretrained(
                path, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
            )
    except (OSError, ValueError) as exc:
        raise BenchError(f"could not load a StableDiffusionPipeline from {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(pipe.scheduler, DDIMScheduler):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    if pipe.scheduler.config.thresholding:
        raise BenchError("DDIM with dynamic thresholding has no Gaussian step log-probability; disable thresholding")
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
        module.eval()  # DPOK App. B: the UNet stays in eval mode (no dropout) during fine-tuning
    return pipe.to(device)


def add_lora(unet, rank: int, alpha: float, targets: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Attach a LoRA adapter (B initialised to zero, so the policy starts at p_pre); return its parameters."""
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=list(targets)))
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    if not params:
        raise BenchError(f"no UNet module matched the LoRA targets {', '.join(targets)}")
    for p in params:
        p.requires_grad_(True)
    return params


@contextlib.contextmanager
def reference_policy(unet):
    """Run the pretrained model p_pre: the same UNet with its adapters disabled (no-op without adapters)."""
    if not getattr(unet, "_hf_peft_config_loaded", False):
        yield
        return
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


def reference_model(unet):
    """p_pre as a module tree of its own: the UNet without its adapters, sharing every weight tensor with ``unet``
    (no copy of the weights), so that it can run at the same time as the policy (peft's adapter switch is state of
    the shared modules). Built on first use and cached on the UNet until its dtype or device changes."""
    first = next(unet.parameters())
    key = (first.dtype, first.device)
    cached = unet.__dict__.get("_bench_reference")
    if cached is not None and cached[0] == key:
        return cached[1]
    from peft.tuners.tuners_utils import BaseTunerLayer

    shared = {id(t): t for t in itertools.chain(unet.parameters(), unet.buffers())}
    ref = copy.deepcopy(unet, shared)
    for module in list(ref.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BaseTunerLayer):
                setattr(module, name, child.get_base_layer())
    ref._hf_peft_config_loaded = False
    unet.__dict__["_bench_reference"] = (key, ref)  # not a submodule: not saved, not in state_dict
    return ref


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    """The adapter weights in diffusers' naming, ready for ``save_lora_weights``."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def save_lora(unet, folder: str | Path) -> None:
    """Write ``pytorch_lora_weights.safetensors`` (plus the adapter's rank/alpha) loadable by load_lora_weights."""
    from diffusers import StableDiffusionPipeline

    config = unet.peft_config["default"]
    metadata = {
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "target_modules": sorted(config.target_modules),
    }
    StableDiffusionPipeline.save_lora_weights(
        str(folder), unet_lora_layers=lora_state_dict(unet), unet_lora_adapter_metadata=metadata
    )


CARD_FILES = {"README.md", "quality.json", "footholds.json", "pretrain_stats.json"}  # measurements, not the model


def model_fingerprint(model_path: str | Path, weights_only: bool = False) -> str | None:
    """SHA-256 over the pipeline folder's files (relative path and content), so two clones of one model match;
    None for a model that is not a local folder (nothing to fingerprint: not cached). ``weights_only`` leaves out
    the model card's files at the folder's top (CARD_FILES), so re-measuring a model keeps its identity."""
    root = Path(model_path)
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if weights_only:
        files = [p for p in files if not (p.parent == root and p.name in CARD_FILES)]
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
