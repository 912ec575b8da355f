"""The VideoLLaMA3 model: configuration, vision encoder, projector, frame pruner, the LLM around them.

- :mod:`.configuration`: ``VideoLLaMA3Config`` (a ``Qwen2Config`` with the official extra fields);
- :mod:`.vision_encoder`, :mod:`.vision_attention`: the any-resolution SigLIP encoder with 2D RoPE and its
  per-image / per-frame attention backends; :mod:`.cpu_attention`: fp32 attention kernels for CPU training;
- :mod:`.projector`: ``mlp2x_gelu``; :mod:`.pruning`: the Differential Frame Pruner;
- :mod:`.modeling`: ``VideoLLaMA3ForCausalLM`` (merging visual tokens, pruning, batching, generation);
- :mod:`.layouts`: checkpoint layouts (official / transformers), validation, conversion;
- :mod:`.sampling`: top-p filtering (serving and live sessions);
- :mod:`.live`: a live session (frames in one at a time, questions at any time, exactly as offline);
- :mod:`.llm_cache`, :mod:`.token_layout`: the KV-cache argument across transformers releases; tokens per
  visual item and positions.

Nothing is imported here: ``import videollama3.model.configuration`` does not load the model.
"""
