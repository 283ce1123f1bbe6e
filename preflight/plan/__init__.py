"""The planner: will a fine-tuning job fit, and how to lay it out (``preflight plan``).

- ``model``: the model's shape, from a local config.json, the bundled catalog or ``--params``.
- ``params``: every parameter tensor of that shape, hence exact counts (total, active, trainable).
- ``memory``: bytes per GPU for one layout, broken down (parameters, gradients, optimizer states,
  activations, buffers, overhead) and the peak.
- ``search``: the layouts a cluster allows, a documented step-time model, and the ranking.
- ``emit``: the settings that realise a layout (torchrun, DeepSpeed, Accelerate, HF, LLaMA-Factory).
- ``units``: sizes and bandwidths with explicit units (GiB vs GB, Gb/s vs GB/s).
- ``swept``: the cluster as ``preflight cluster`` saw it, and a benchmark's measured bandwidth.
- ``render``: the terminal report.
- ``command``: the CLI, and the plan section of ``preflight cluster --plan``.
"""
