"""A small byte-level BPE tokenizer trained on the corpus (GPT-2/GPT-NeoX style)."""

from __future__ import annotations

from typing import Iterable

EOS = "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE (leading-space tokens, like GPT-2/GPT-NeoX) and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)
