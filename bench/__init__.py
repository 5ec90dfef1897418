"""dpok-bench: fine-tune text-to-image diffusion models with RL and compare methods side by side."""

__version__ = "0.1.0"
