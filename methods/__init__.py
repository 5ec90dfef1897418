"""Fine-tuning methods (imported as ``bench.methods``): one module per method, each a config and a loss."""
