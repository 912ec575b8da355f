"""The transformers internals we rely on, checked on the installed release so a change fails here, loudly.

Public contracts (``generate``, ``from_pretrained``, Auto classes) are covered by the behaviour tests.
These are the few places where the model and the serving engine use something less settled: the name
of the KV-cache argument (renamed in 5.25), the cache layers the engine fills in place, the per-layer-type
attention-mask mapping it passes to the decoder, and the attention registries.
"""

from __future__ import annotations

import inspect

import torch
from transformers import AttentionInterface, Cache, DynamicCache, Qwen2Model
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

from parity_fixtures import load_case
from videollama3.model.llm_cache import CACHE_ARGUMENT, output_cache


def test_generate_hands_the_cache_to_forward_under_the_name_we_pass_it_on(fixture_model):
    _, inputs, outputs = load_case("image_single")
    seen: list[set[str]] = []
    forward = fixture_model.forward

    def spy(*args, **kwargs):
        seen.append({name for name, value in kwargs.items() if isinstance(value, Cache)})
        return forward(*args, **kwargs)

    fixture_model.forward = spy
    try:
        ids = fixture_model.generate(**inputs, max_new_tokens=3, do_sample=False)
    finally:
        del fixture_model.forward
    assert seen[1:] and all(names == {CACHE_ARGUMENT} for names in seen[1:]), (
        f"generate passed the KV cache as {seen}; videollama3.model.llm_cache.CACHE_ARGUMENT is {CACHE_ARGUMENT!r}"
    )
    assert ids[0].tolist() == outputs["generated_ids"].reshape(-1)[:3].tolist()


def test_qwen2_forward_takes_and_returns_the_cache_under_that_name(fixture_model):
    assert CACHE_ARGUMENT in inspect.signature(Qwen2Model.forward).parameters
    ids = torch.tensor([[5, 6, 7]])
    out = fixture_model.model(input_ids=ids, use_cache=True, **{CACHE_ARGUMENT: DynamicCache(config=fixture_model.config)})
    assert isinstance(output_cache(out), Cache) and output_cache(out).get_seq_length() == 3


def test_dynamic_cache_layers_are_what_the_serving_engine_fills_in_place(fixture_model):
    cache = DynamicCache(config=fixture_model.config)
    assert cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers)
    layer = cache.layers[0]
    keys = torch.zeros(1, 2, 4, 8)
    layer.lazy_initialization(keys, keys)
    layer.keys, layer.values = keys, keys  # the engine's make_cache and add_rows assign these
    assert cache.get_seq_length() == 4


def test_decoder_uses_a_prepared_mask_mapping_as_it_is(fixture_model):
    """The engine hands the decoder ``{"full_attention": mask}`` (what ``generate`` prepares) to skip
    transformers' mask construction; it must mean the same as the 2D padding mask."""
    torch.manual_seed(0)
    embeds = torch.randn(2, 5, fixture_model.config.hidden_size)
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    mapping = {"full_attention": mask.bool()[:, None, None, :] & causal[None, None]}
    reference = fixture_model.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
    prepared = fixture_model.model(inputs_embeds=embeds, attention_mask=mapping, position_ids=positions)
    torch.testing.assert_close(prepared.last_hidden_state[:, 1:], reference.last_hidden_state[:, 1:])


def test_attention_registries_take_our_functions():
    parameters = list(inspect.signature(sdpa_attention_forward).parameters)
    assert parameters[:5] == ["module", "query", "key", "value", "attention_mask"]
    from videollama3.serving.kv_cache import BATCHES_SDPA, batches_sdpa

    assert AttentionInterface()[BATCHES_SDPA] is batches_sdpa  # registered when kv_cache is imported
    assert AttentionMaskInterface()[BATCHES_SDPA] is AttentionMaskInterface()["sdpa"]
