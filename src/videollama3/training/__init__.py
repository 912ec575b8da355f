"""Training VideoLLaMA3: the four-stage recipe, packed, distributed (FSDP2), resumable, with LoRA.

- :mod:`.recipe`: YAML recipes (stages, data, optimiser, batching) with ``--set`` overrides;
- :mod:`.annotations`, :mod:`.data`: official-format annotation files -> processed samples, in a seeded order;
- :mod:`.labels`: the supervision rule and length limits; :mod:`.packing`: micro-batches;
- :mod:`.objective`: the loss module; :mod:`.optim`: learning rates per module, freezing, schedule;
- :mod:`.trainer`, :mod:`.runner`: a stage, a recipe; :mod:`.distributed`: torchrun + FSDP2;
- :mod:`.checkpointing`: resumable and final checkpoints; :mod:`.lora`: PEFT adapters and merging;
- :mod:`.initialize`: a new model from a Qwen2 LLM and a SigLIP encoder (the synthetic worlds are in
  :mod:`videollama3.synthetic`).

See docs/training.md. Nothing heavy is imported here.
"""
