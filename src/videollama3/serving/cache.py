"""Caches that let repeated media and repeated prompt prefixes skip work.

:class:`FeatureCache` keeps projected visual features, so a media item is encoded once. A multi-turn chat about one video re-sends the video with every turn; the vision encoder is by far the
most expensive part of answering (seconds for a long video on a GPU), so its output is kept.

Keys are content hashes of what the encoder sees (see :func:`item_key`): the item's patch rows, its grid
and its merge size. The patches are a function of the media bytes, the sampling parameters (fps,
max_frames, start / end time) and the visual-token budget, so this key covers all of them and, unlike a
key built from those parameters, can never serve features of a differently resized item (the budget of
one item depends on the other items of the conversation).

:class:`PrefixCache` keeps the KV cache of prompts already prefilled, so a prompt that starts like an
earlier one (the next turn of a chat, another question about the same video, the shared system prompt)
only prefills its new tokens. Prefixes are matched in blocks of :data:`PREFIX_BLOCK` tokens by a chained
hash of the token ids *and* the content hashes of the media whose tokens they contain (all ``<image>``
placeholders have the same id), see :func:`prefix_hashes`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

PREFIX_BLOCK = 32  # prompt prefixes are cached and matched in multiples of this many tokens


def item_key(pixel_rows: torch.Tensor, grid: tuple[int, int, int], merge_size: int) -> str:
    """Content hash of one image / video item as the vision encoder receives it."""
    rows = pixel_rows.detach().contiguous().cpu()
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{tuple(rows.shape)}|{rows.dtype}|{tuple(grid)}|{merge_size}|".encode())
    # The raw bytes, without a copy: reshaping to uint8 reinterprets the storage of any dtype.
    digest.update(memoryview(rows.view(torch.uint8).numpy()))
    return digest.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0


class FeatureCache:
    """Thread-safe LRU map ``key -> tensor`` bounded by the total size of the tensors in bytes.

    A tensor larger than the whole budget is not stored (it would evict everything and then itself).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self._stats.misses += 1
                return None
            self._items.move_to_end(key)
            self._stats.hits += 1
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._stats.bytes -= old.numel() * old.element_size()
            self._items[key] = value
            self._stats.bytes += size
            while self._stats.bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._stats.bytes -= evicted.numel() * evicted.element_size()
                self._stats.evictions += 1
            self._stats.entries = len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._stats.bytes = 0
            self._stats.entries = 0

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(**vars(self._stats))


def prefix_hashes(
    input_ids: torch.Tensor,
    image_token_id: int,
    item_keys: tuple[str, ...] = (),
    kept_per_item: list[int] | tuple[int, ...] = (),
    block: int = PREFIX_BLOCK,
) -> tuple[str, ...]:
    """Hash of every prefix of ``input_ids`` whose length is a multiple of ``block`` (shorter than the prompt).

    Hash j covers tokens ``[0, (j + 1) * block)`` and the content hash of every media item with a visual
    token in that range: two prompts share hash j exactly when their first (j + 1) * block tokens, visual
    features included, are the same. The prompt's last token is never covered, so a cached prefix always
    leaves at least one token to run (the one whose logits start the answer).
    """
    ids = input_ids.reshape(-1).to("cpu", torch.int64)
    # Runs on the request thread pool but holds the GIL the model thread needs: the per-block work is
    # slicing bytes and looking up counts, not converting tokens one by one (a 3600-token prompt is 112 blocks).
    data = ids.numpy().tobytes()
    width = ids.element_size()
    # placeholders_before[j] = placeholders among the first j * block tokens
    placeholders_before = torch.cat([ids.new_zeros(1), (ids == image_token_id).cumsum(0)])[::block].tolist()
    # Item of each placeholder, in order (placeholders of item i are consecutive, kept_per_item[i] of them).
    item_starts, total = [], 0
    for n in kept_per_item:
        item_starts.append(total)
        total += n
    digest = hashlib.blake2b(digest_size=16)
    out: list[str] = []
    next_item = 0
    length = ids.numel()
    for j, start in enumerate(range(0, length - 1 - (length - 1) % block, block)):
        digest.update(data[start * width : (start + block) * width])
        placeholders = placeholders_before[j + 1]
        while next_item < len(item_keys) and item_starts[next_item] < placeholders:
            digest.update(item_keys[next_item].encode())
            next_item += 1
        out.append(digest.copy().hexdigest())
    return tuple(out)


@dataclass
class PrefixStats:
    hits: int = 0
    misses: int = 0
    reused_tokens: int = 0
    evictions: int = 0
    blocks: int = 0
    bytes: int = 0


class PrefixCache:
    """Thread-safe LRU of prompt KV caches in blocks of ``block`` tokens, keyed by chained prefix hashes.

    Block j of a prompt is stored under the hash of the prompt's first (j + 1) * block tokens, so prompts
    that share a prefix share its blocks (a chat's turns store each block once, not once per turn), and a
    lookup is the longest run of cached blocks from the start. Bounded by the bytes of the stored
    tensors; a lookup refreshes its blocks last-to-first, so that eviction takes the ends of prefixes
    before their beginnings.
    """

    def __init__(self, max_bytes: int, block: int = PREFIX_BLOCK):
        self.max_bytes = int(max_bytes)
        self.block = block
        self._blocks: OrderedDict[str, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = PrefixStats()

    def lookup(self, hashes: tuple[str, ...]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int] | None:
        """(per-layer (keys, values), each (kv_heads, length, head_dim), of the longest cached prefix, length)."""
        with self._lock:
            count = 0
            while count < len(hashes) and hashes[count] in self._blocks:
                count += 1
            if count == 0:
                self._stats.misses += 1
                return None
            for h in reversed(hashes[:count]):
                self._blocks.move_to_end(h)
            blocks = [self._blocks[h] for h in hashes[:count]]
            self._stats.hits += 1
            self._stats.reused_tokens += count * self.block
        layers = [
            (torch.cat([b[layer][0] for b in blocks], dim=1), torch.cat([b[layer][1] for b in blocks], dim=1))
            for layer in range(len(blocks[0]))
        ]
        return layers, count * self.block

    def contains(self, hashes: tuple[str, ...]) -> bool:
        """Whether the last block of these hashes is stored (then, very likely, all of them are)."""
        with self._lock:
            return bool(hashes) and hashes[-1] in self._blocks

    def store(self, hashes: tuple[str, ...], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep the blocks of a prompt's KV (per layer (kv_heads, >= len(hashes) * block, head_dim)) not yet stored."""
        with self._lock:
            missing = [j for j, h in enumerate(hashes) if h not in self._blocks]
        new = {}
        for j in missing:
            span = slice(j * self.block, (j + 1) * self.block)
            # Copies: a block must not keep its whole batch's cache alive, nor see later in-place writes.
            new[hashes[j]] = [(k[:, span].clone(), v[:, span].clone()) for k, v in layers]
        with self._lock:
            for h, block in new.items():
                if h in self._blocks:
                    continue
                self._blocks[h] = block
                self._stats.bytes += _nbytes(block)
            while self._stats.bytes > self.max_bytes and self._blocks:
                _, evicted = self._blocks.popitem(last=False)
                self._stats.bytes -= _nbytes(evicted)
                self._stats.evictions += 1
            self._stats.blocks = len(self._blocks)

    def stats(self) -> PrefixStats:
        with self._lock:
            return PrefixStats(**vars(self._stats))


def _nbytes(block: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in block)
