"""A digit-level tokenizer for the reference ladder, built in code (no download, no training).

Every digit is its own token, and a leading space is joined to the first digit of a number
(``" 143"`` -> ``" 1", "4", "3"``), so digits line up with the positions the model must learn
to carry across. The few words of lm-eval's arithmetic prompts (``Question``, `` What``,
`` plus``...) are single tokens. There are no merges across a context/answer boundary: the
context ``"...\\nAnswer:"`` tokenizes as an exact prefix of context + ``" 143"``, which is
what lm-eval's ``TemplateLM._encode_pair`` assumes when it splits the two.

The tokenizer is a ``tokenizers`` WordLevel model behind a regex pre-tokenizer, wrapped in a
``PreTrainedTokenizerFast`` so ``save_pretrained`` writes a ``tokenizer.json`` that
``AutoTokenizer.from_pretrained(folder)`` and lm-eval's ``HFLM`` load offline.
Text outside this vocabulary maps to ``<|unk|>``: the ladder is an arithmetic testbed.
"""

from __future__ import annotations

EOS = "<|endoftext|>"
UNK = "<|unk|>"

#: Whole-word tokens; the ones after the first two carry their leading space.
WORDS = ("Question", "Answer", " What", " is", " plus", " minus", " times", " the", " sum",
         " of", " digits", " number")
#: Punctuation, alone and with a leading space.
PUNCT = (":", "?", "\n", "-", "+", "*", "(", ")", "=", ".", ",")

#: How text is cut into pieces before the vocabulary lookup: a word with its leading space,
#: one digit with its leading space, one other symbol with its leading space, or a lone space.
SPLIT_PATTERN = r"[ ]?[A-Za-z]+|[ ]?[0-9]|[ ]?[^A-Za-z0-9 ]|[ ]"


def digit_vocab() -> dict[str, int]:
    """The vocabulary, in a fixed order (ids are part of the shipped weights' meaning)."""
    symbols = [EOS, UNK]
    symbols += [str(d) for d in range(10)] + [f" {d}" for d in range(10)]
    symbols += list(WORDS)
    symbols += list(PUNCT) + [f" {p}" for p in PUNCT if p != "\n"] + [" "]
    return {s: i for i, s in enumerate(symbols)}


def build_digit_tokenizer():
    """A ``PreTrainedTokenizerFast`` with the digit-level vocabulary; EOS doubles as pad/bos."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=digit_vocab(), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
    tok.decoder = decoders.Fuse()  # concatenate pieces as they are: spaces live inside tokens
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=UNK,
        model_max_length=512, clean_up_tokenization_spaces=False)
