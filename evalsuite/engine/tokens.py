"""Request tokenization, done once per tokenizer and reused by every checkpoint that shares it.

The cache is keyed by the *content* of the tokenizer (its serialised vocabulary, merges, special
tokens and the BOS setting), never by the model. lm-eval's ``--use_cache`` keys requests without
the model and silently returns another checkpoint's scores; here only token ids are cached, and
token ids depend on the tokenizer alone, so sharing them across checkpoints is always correct.

The encodings reproduce lm-eval's ``TemplateLM`` exactly (``_encode_pair``: trailing context
spaces move to the continuation, the continuation is ``encode(context + continuation)`` minus the
context's tokens; an empty context becomes the prefix token), so scores match ``HFLM``.
"""

from __future__ import annotations

import hashlib
import json

# The files that define a tokenizer, and their hash, live in ``evalsuite.series``
# (``TOKENIZER_FILES``, ``hash_tokenizer_files``): one list, read before any tokenizer loads.


def fingerprint_tokenizer(tokenizer, add_bos_token: bool | None = None) -> str:
    """A content hash of a loaded tokenizer: equal fingerprints give equal token ids."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    special = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
    digest.update(json.dumps(special, sort_keys=True).encode())
    digest.update(repr((add_bos_token, getattr(tokenizer, "add_bos_token", None),
                        getattr(tokenizer, "add_eos_token", None))).encode())
    return digest.hexdigest()


class TokenCache:
    """Token ids for request strings under one tokenizer, memoised.

    ``prefix_token_id`` is the token that stands in for an empty context (lm-eval: BOS if the
    tokenizer has one, else EOS). ``add_bos_token`` mirrors ``HFLM(add_bos_token=...)``.
    """

    def __init__(self, tokenizer, *, prefix_token_id: int, add_bos_token: bool | None = None,
                 fingerprint: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.prefix_token_id = prefix_token_id
        self.add_bos_token = add_bos_token
        self.fingerprint = fingerprint or fingerprint_tokenizer(tokenizer, add_bos_token)
        bos = tokenizer.decode(prefix_token_id)
        self._bos_strings = (bos,) if bos else ()
        self._encodings: dict[tuple[str, bool | None], tuple[int, ...]] = {}
        self._pairs: dict[tuple[str, str], tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.n_encode_calls = 0

    def _kwargs(self, string: str, add_special_tokens: bool | None) -> dict:
        if add_special_tokens is not None:
            kwargs = {"add_special_tokens": add_special_tokens}
        elif self.add_bos_token is not None:
            kwargs = {"add_special_tokens": self.add_bos_token}
        else:
            kwargs = {}
        if add_special_tokens is None and any(string.startswith(b) for b in self._bos_strings):
            kwargs["add_special_tokens"] = False
        return kwargs

    def encode(self, string: str, add_special_tokens: bool | None = None) -> tuple[int, ...]:
        """Like ``HFLM.tok_encode``: ``add_special_tokens=None`` means the tokenizer's default
        (or ``add_bos_token`` if set), switched off when the string already starts with BOS."""
        key = (string, add_special_tokens)
        ids = self._encodings.get(key)
        if ids is None:
            ids = tuple(self.tokenizer.encode(string, **self._kwargs(string, add_special_tokens)))
            self.n_encode_calls += 1
            self._encodings[key] = ids
        return ids

    def prefetch_pairs(self, pairs) -> None:
        """Encode the strings that ``encode_pair`` will need for these (context, continuation)
        pairs in one batched tokenizer call per setting, instead of one call per string (the
        per-call overhead was most of the tokenization time: about 0.1 ms a string). The ids
        are the tokenizer's own, as ``encode`` would return them (tested)."""
        wanted: dict[tuple, list[str]] = {}
        seen = set()
        for context, continuation in pairs:
            if (context, continuation) in self._pairs or context == "":
                continue
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces > 0:
                continuation = context[-n_spaces:] + continuation
                context = context[:-n_spaces]
            for string in (context + continuation, context):
                if string in seen or (string, None) in self._encodings:
                    continue
                seen.add(string)
                kwargs = self._kwargs(string, None)
                wanted.setdefault(tuple(sorted(kwargs.items())), []).append(string)
        for kwargs, strings in wanted.items():
            for start in range(0, len(strings), 1024):
                chunk = strings[start:start + 1024]
                ids = self.tokenizer(chunk, **dict(kwargs))["input_ids"]
                for string, one in zip(chunk, ids):
                    self._encodings[(string, None)] = tuple(one)
                self.n_encode_calls += 1

    def encode_pair(self, context: str, continuation: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(context ids, continuation ids) exactly as lm-eval's ``TemplateLM.loglikelihood``."""
        key = (context, continuation)
        pair = self._pairs.get(key)
        if pair is not None:
            return pair
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix_token_id:
                pair = (cont[:1], cont[1:])
            else:
                pair = ((self.prefix_token_id,), cont)
        else:
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces > 0:
                continuation = context[-n_spaces:] + continuation
                context = context[:-n_spaces]
            whole = self.encode(context + continuation)
            ctx = self.encode(context)
            pair = (ctx, whole[len(ctx):])
        self._pairs[key] = pair
        return pair

    def __len__(self) -> int:
        return len(self._encodings)
